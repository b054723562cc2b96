"""Fuzzing the Image / CompressedImage converters (issue #12): only the documented error.

Every converter in :mod:`alpamayo_ros.ros.images` either returns what its docstring says
(shape, dtype) or raises :class:`ImageConversionError`; any other exception, a crash or a
wrong shape is a bug. Inputs: arbitrary width/height/step/encoding/endianness/data, valid
images with one field broken, and valid jpeg/png files with bytes flipped, cut or inserted.
Budget: fixed example counts with ``derandomize=True`` (the same inputs on every run).
"""

from __future__ import annotations

import zlib

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st
from sensor_msgs.msg import CompressedImage, Image

from alpamayo_ros.ros.images import (
    ENCODINGS,
    ImageConversionError,
    array_to_compressed,
    array_to_image,
    compressed_to_array,
    compressed_to_rgb,
    image_to_array,
    image_to_rgb,
)
from test.helpers.fuzz import fuzz_settings

FUZZ = fuzz_settings(150)

encodings = st.sampled_from(sorted(ENCODINGS)) | st.text(max_size=8) | st.sampled_from(
    ["RGB8", "16UC3", "32FC1", "bayer_rggb8", "yuv422", "mono16", "8UC3"])
small_dims = st.integers(min_value=0, max_value=12)
uint32 = st.integers(min_value=0, max_value=2**32 - 1)


def _image(encoding: str, height: int, width: int, step: int, data: bytes,
           bigendian: int = 0) -> Image:
    msg = Image()
    msg.encoding, msg.height, msg.width, msg.step = encoding, height, width, step
    msg.is_bigendian = bigendian
    msg.data = data
    return msg


def _check_array(msg: Image, out: np.ndarray) -> None:
    info = ENCODINGS[msg.encoding]
    shape = (msg.height, msg.width) if info.channels == 1 else (msg.height, msg.width,
                                                                 info.channels)
    assert out.shape == shape and out.dtype == info.dtype


def _check_rgb(out: np.ndarray) -> None:
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8
    assert out.flags.c_contiguous


@FUZZ
@given(encoding=encodings, height=small_dims | uint32, width=small_dims | uint32,
       step=st.integers(min_value=0, max_value=200) | uint32, bigendian=st.integers(0, 1),
       data=st.binary(max_size=600))
@example(encoding="rgb8", height=2**31, width=2**31, step=2**32 - 1, bigendian=0, data=b"")
@example(encoding="16UC1", height=3, width=5, step=11, bigendian=1, data=bytes(33))
def test_raw_image_fields_arbitrary(encoding: str, height: int, width: int, step: int,
                                    bigendian: int, data: bytes) -> None:
    msg = _image(encoding, height, width, step, data, bigendian)
    try:
        _check_array(msg, image_to_array(msg))
    except ImageConversionError:
        pass
    try:
        _check_rgb(image_to_rgb(msg))
    except ImageConversionError:
        pass


@st.composite
def broken_valid_images(draw: st.DrawFn) -> Image:
    """A valid image, then one of its fields replaced or its data cut/extended."""
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    info = ENCODINGS[encoding]
    height, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    shape = (height, width) if info.channels == 1 else (height, width, info.channels)
    pixels = np.frombuffer(draw(st.binary(min_size=int(np.prod(shape)) * info.dtype.itemsize,
                                          max_size=int(np.prod(shape)) * info.dtype.itemsize)),
                           dtype=info.dtype).reshape(shape)
    row = width * info.channels * info.dtype.itemsize
    msg = array_to_image(pixels, encoding, step=row + draw(st.integers(0, 7)))
    flaw = draw(st.sampled_from(["none", "height", "width", "step", "encoding", "cut",
                                 "extend", "bigendian"]))
    if flaw == "height":
        msg.height = draw(small_dims)
    elif flaw == "width":
        msg.width = draw(small_dims)
    elif flaw == "step":
        msg.step = draw(st.integers(0, 3 * row))
    elif flaw == "encoding":
        msg.encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    elif flaw == "cut":
        msg.data = bytes(msg.data)[:draw(st.integers(0, max(len(msg.data) - 1, 0)))]
    elif flaw == "extend":
        msg.data = bytes(msg.data) + draw(st.binary(min_size=1, max_size=16))
    elif flaw == "bigendian":
        msg.is_bigendian = 1
    return msg


@FUZZ
@given(msg=broken_valid_images())
def test_raw_image_with_one_field_broken(msg: Image) -> None:
    try:
        _check_array(msg, image_to_array(msg))
    except ImageConversionError:
        pass
    try:
        _check_rgb(image_to_rgb(msg))
    except ImageConversionError:
        pass


def _encoded(kind: str) -> bytes:
    rng = np.random.default_rng(3)
    if kind == "png16":
        pixels = rng.integers(0, 65535, size=(6, 5), dtype=np.uint16)
        return bytes(array_to_compressed(pixels, "png", input_encoding="16UC1").data)
    if kind == "mono":
        pixels = rng.integers(0, 255, size=(6, 5), dtype=np.uint8)
        return bytes(array_to_compressed(pixels, "png", input_encoding="mono8").data)
    pixels = rng.integers(0, 255, size=(8, 12, 4 if kind == "png_rgba" else 3), dtype=np.uint8)
    fmt = "jpeg" if kind == "jpeg" else "png"
    return bytes(array_to_compressed(pixels, fmt, input_encoding="rgba8" if kind == "png_rgba"
                                     else "rgb8").data)


VALID = {kind: _encoded(kind) for kind in ("jpeg", "png", "png_rgba", "mono", "png16")}


def _png_with_size(width: int, height: int, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (valid CRCs, almost no pixel data)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))
    ihdr = (width.to_bytes(4, "big") + height.to_bytes(4, "big")
            + bytes([bit_depth, colour_type, 0, 0, 0]))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    """A valid jpeg/png with bytes flipped, a piece cut out or inserted, or truncated."""
    data = bytearray(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "cut", "insert"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
    return bytes(data)


formats = st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8",
                           "16UC1; png compressed mono16", "JPG", "tiff", "", "h264"]) | st.text(
                               max_size=12)


def _compressed(fmt: str, data: bytes) -> CompressedImage:
    msg = CompressedImage()
    msg.format, msg.data = fmt, data
    return msg


def _decode_both(msg: CompressedImage) -> None:
    try:
        _check_rgb(compressed_to_rgb(msg))
    except ImageConversionError:
        pass
    try:
        out = compressed_to_array(msg)
        assert out.ndim in (2, 3) and out.dtype in (np.uint8, np.uint16)
    except ImageConversionError:
        pass


@FUZZ
@given(fmt=formats, data=mutated_files() | st.binary(max_size=200))
@example(fmt="png", data=VALID["png16"])  # a 16-bit png is not an 8-bit RGB image
@example(fmt="png", data=_png_with_size(2**31 - 1, 2**31 - 1))
@example(fmt="png", data=_png_with_size(40000, 40000))
@example(fmt="png", data=_png_with_size(0, 5))
def test_compressed_arbitrary_and_corrupted(fmt: str, data: bytes) -> None:
    _decode_both(_compressed(fmt, data))


@fuzz_settings(40)
@given(height=st.integers(1, 16), width=st.integers(1, 16),
       channels=st.sampled_from([1, 3, 4]), fmt=st.sampled_from(["jpeg", "png"]),
       seed=st.integers(0, 2**16))
def test_compressed_round_trip_shapes(height: int, width: int, channels: int, fmt: str,
                                      seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    pixels = rng.integers(0, 255, size=shape, dtype=np.uint8)
    encoding = {1: "mono8", 3: "rgb8", 4: "rgba8"}[channels]
    msg = array_to_compressed(pixels, fmt, input_encoding=encoding)
    rgb = compressed_to_rgb(msg)
    assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
    if fmt == "png":  # lossless: the colour channels come back exactly
        expected = np.repeat(pixels[..., None], 3, axis=2) if channels == 1 else pixels[..., :3]
        np.testing.assert_array_equal(rgb, expected)
