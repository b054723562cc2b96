"""Conversions between ``sensor_msgs/Image`` / ``CompressedImage`` and numpy arrays.

This replaces cv_bridge where it is not installed (it is a C++ extension that pip cannot
provide) and is used everywhere in the package, so behaviour is the same on vehicles and
here. Raw images are read zero-copy: the returned array is a view on the message buffer
(rows padded by ``step`` give a strided, non-contiguous view). Malformed input raises
:class:`ImageConversionError` naming what is wrong; nothing is silently reshaped.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header


class ImageConversionError(ValueError):
    """An image message cannot be converted (wrong size, encoding or bytes)."""


@dataclass(frozen=True)
class EncodingInfo:
    """Layout of one ``sensor_msgs/Image`` encoding."""

    channels: int
    dtype: np.dtype


# sensor_msgs/image_encodings names supported by the package.
ENCODINGS: dict[str, EncodingInfo] = {
    "rgb8": EncodingInfo(3, np.dtype(np.uint8)),
    "bgr8": EncodingInfo(3, np.dtype(np.uint8)),
    "rgba8": EncodingInfo(4, np.dtype(np.uint8)),
    "bgra8": EncodingInfo(4, np.dtype(np.uint8)),
    "mono8": EncodingInfo(1, np.dtype(np.uint8)),
    "16UC1": EncodingInfo(1, np.dtype(np.uint16)),
}

# Channel order changes from each colour encoding to RGB.
_TO_RGB = {
    "rgb8": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
}


def _encoding_info(encoding: str) -> EncodingInfo:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {sorted(ENCODINGS)}"
        ) from None


def image_to_array(msg: Image) -> np.ndarray:
    """Return the pixels of ``msg`` as ``(H, W)`` or ``(H, W, C)``, a view on its buffer.

    The array has the encoding's dtype in native byte order (big-endian 16-bit data is
    byte-swapped, which copies). Raises :class:`ImageConversionError` when the size,
    step or encoding is inconsistent.
    """
    info = _encoding_info(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * info.channels * info.dtype.itemsize
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image has no pixels: {width}x{height}")
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than a row of {width} x {msg.encoding} pixels ({row_bytes} B)"
        )
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size != step * height:
        raise ImageConversionError(
            f"data length {buffer.size} B does not match step {step} x height {height}"
            f" = {step * height} B"
        )
    rows = buffer.reshape(height, step)[:, :row_bytes]
    dtype = info.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    if info.dtype.itemsize > 1 and (step % info.dtype.itemsize):
        rows = np.ascontiguousarray(rows)  # misaligned rows: copy to get a valid view
    pixels = rows.view(dtype)
    if dtype.byteorder not in ("=", "|") and dtype != info.dtype:
        pixels = pixels.astype(info.dtype)  # to native byte order
    if info.channels == 1:
        return pixels.reshape(height, width)
    return pixels.reshape(height, width, info.channels)


def image_to_rgb(msg: Image) -> np.ndarray:
    """Return a colour image message as a contiguous ``(H, W, 3)`` uint8 RGB array."""
    if msg.encoding not in _TO_RGB:
        raise ImageConversionError(f"encoding {msg.encoding!r} is not a colour/mono8 image")
    pixels = image_to_array(msg)
    code = _TO_RGB[msg.encoding]
    return np.ascontiguousarray(pixels) if code is None else cv2.cvtColor(pixels, code)


def array_to_image(
    pixels: np.ndarray,
    encoding: str,
    header: Header | None = None,
    step: int | None = None,
) -> Image:
    """Build an ``Image`` from ``(H, W)`` or ``(H, W, C)`` pixels in ``encoding``.

    ``step`` pads each row (bytes, at least one row of pixels); ``header`` is copied into
    the message as given.
    """
    info = _encoding_info(encoding)
    array = np.asarray(pixels)
    expected_ndim = 2 if info.channels == 1 else 3
    if array.ndim == 3 and info.channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != expected_ndim or (expected_ndim == 3 and array.shape[2] != info.channels):
        raise ImageConversionError(
            f"array of shape {array.shape} cannot be encoded as {encoding}"
            f" ({info.channels} channel(s))"
        )
    if array.dtype != info.dtype:
        raise ImageConversionError(
            f"array dtype {array.dtype} does not match {encoding} ({info.dtype})")
    height, width = array.shape[:2]
    row_bytes = width * info.channels * info.dtype.itemsize
    step = row_bytes if step is None else int(step)
    if step < row_bytes:
        raise ImageConversionError(f"step {step} is smaller than a row ({row_bytes} B)")
    native = array.astype(info.dtype.newbyteorder("<"), copy=False)
    if step == row_bytes:
        data = np.ascontiguousarray(native).view(np.uint8).reshape(-1)
    else:
        padded = np.zeros((height, step), dtype=np.uint8)
        padded[:, :row_bytes] = np.ascontiguousarray(native).view(np.uint8).reshape(height, -1)
        data = padded.reshape(-1)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.is_bigendian = 0
    msg.step = step
    msg.data = data.tobytes()  # bytes take rclpy's fast path (a memoryview is copied per byte)
    return msg


def _imdecode(msg: CompressedImage) -> np.ndarray:
    """``cv2.imdecode`` of the message's bytes; ImageConversionError when it fails."""
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageConversionError("compressed image has no data")
    try:
        decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. a header claiming more than OpenCV's 2^30 pixels
        raise ImageConversionError(
            f"could not decode {buffer.size} B as {msg.format!r}: {exc.err}") from None
    if decoded is None:
        raise ImageConversionError(f"could not decode {buffer.size} B as {msg.format!r}")
    return decoded


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """Decode a jpeg/png ``CompressedImage`` into a ``(H, W, 3)`` uint8 RGB array.

    A 16-bit png is not a camera frame: ImageConversionError (as for undecodable bytes).
    """
    fmt = msg.format.lower()
    if "jpeg" not in fmt and "jpg" not in fmt and "png" not in fmt:
        raise ImageConversionError(f"unsupported compressed format {msg.format!r} (jpeg or png)")
    decoded = _imdecode(msg)
    if decoded.dtype != np.uint8:
        raise ImageConversionError(f"{msg.format!r} decodes to a {decoded.dtype} image; "
                                   "camera frames must be 8-bit")
    if decoded.ndim == 2:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
    if decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def compressed_to_array(msg: CompressedImage) -> np.ndarray:
    """Decode a ``CompressedImage`` keeping its depth and channels (png 16-bit stays 16-bit).

    Colour images come back in RGB(A) order; mono images as ``(H, W)``.
    """
    decoded = _imdecode(msg)
    if decoded.ndim == 3 and decoded.shape[2] == 3:
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if decoded.ndim == 3 and decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)
    return decoded


def array_to_compressed(
    pixels: np.ndarray,
    fmt: str = "jpeg",
    header: Header | None = None,
    jpeg_quality: int = 90,
    input_encoding: str = "rgb8",
) -> CompressedImage:
    """Encode pixels given in ``input_encoding`` as a jpeg/png ``CompressedImage``.

    The ``format`` field follows image_transport: ``"<encoding>; jpeg compressed bgr8"``.
    PNG keeps 16-bit mono images lossless.
    """
    if fmt not in ("jpeg", "png"):
        raise ImageConversionError(f"unsupported compressed format {fmt!r} (jpeg or png)")
    info = _encoding_info(input_encoding)
    array = np.asarray(pixels)
    if array.dtype != info.dtype:
        raise ImageConversionError(f"array dtype {array.dtype} does not match {input_encoding}")
    if info.channels == 1:
        bgr, stored = array, ("mono16" if info.dtype.itemsize == 2 else "mono8")
    elif input_encoding in ("rgb8", "rgba8"):
        code = cv2.COLOR_RGB2BGR if info.channels == 3 else cv2.COLOR_RGBA2BGRA
        bgr, stored = cv2.cvtColor(array, code), ("bgr8" if info.channels == 3 else "bgra8")
    else:
        bgr, stored = array, input_encoding
    if fmt == "jpeg" and info.dtype.itemsize != 1:
        raise ImageConversionError("jpeg cannot hold 16-bit images; use png")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ImageConversionError(f"could not encode a {array.shape} array as {fmt}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f"{input_encoding}; {fmt} compressed {stored}"
    msg.data = memoryview(encoded.reshape(-1))
    return msg
