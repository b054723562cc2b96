"""Round trips and error cases of the Image/CompressedImage <-> numpy conversions."""

import numpy as np
import pytest
from std_msgs.msg import Header

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

RNG = np.random.default_rng(7)


def random_pixels(encoding: str, height: int = 5, width: int = 7) -> np.ndarray:
    info = ENCODINGS[encoding]
    shape = (height, width) if info.channels == 1 else (height, width, info.channels)
    return RNG.integers(0, np.iinfo(info.dtype).max, size=shape, dtype=info.dtype)


def stamped_header() -> Header:
    header = Header(frame_id="camera_front_wide")
    header.stamp.sec, header.stamp.nanosec = 1234, 567
    return header


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("pad", [0, 5])
def test_raw_round_trip_every_encoding(encoding: str, pad: int) -> None:
    pixels = random_pixels(encoding)
    row_bytes = pixels[0].nbytes
    msg = array_to_image(pixels, encoding, header=stamped_header(), step=row_bytes + pad)
    assert msg.step == row_bytes + pad
    assert len(msg.data) == msg.step * msg.height
    back = image_to_array(msg)
    np.testing.assert_array_equal(back, pixels)
    assert back.dtype == ENCODINGS[encoding].dtype
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == (
        "camera_front_wide", 1234, 567)


def test_raw_read_is_zero_copy_view() -> None:
    msg = array_to_image(random_pixels("rgb8"), "rgb8")
    view = image_to_array(msg)
    assert not view.flags.owndata
    assert np.shares_memory(view, np.frombuffer(msg.data, dtype=np.uint8))


def test_big_endian_16uc1_is_swapped() -> None:
    pixels = np.array([[1, 258], [65535, 4096]], dtype=np.uint16)
    msg = array_to_image(pixels, "16UC1")
    msg.data = memoryview(pixels.astype(">u2").view(np.uint8).reshape(-1))
    msg.is_bigendian = 1
    np.testing.assert_array_equal(image_to_array(msg), pixels)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_image_to_rgb_channel_order(encoding: str) -> None:
    rgb = random_pixels("rgb8")
    source = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2),
        "bgra8": np.concatenate([rgb[..., ::-1], np.full(rgb.shape[:2] + (1,), 9, np.uint8)], 2),
        "mono8": rgb[..., 0],
    }[encoding]
    out = image_to_rgb(array_to_image(np.ascontiguousarray(source), encoding))
    expected = np.repeat(rgb[..., :1], 3, axis=2) if encoding == "mono8" else rgb
    np.testing.assert_array_equal(out, expected)


def test_malformed_raw_images_raise() -> None:
    msg = array_to_image(random_pixels("rgb8"), "rgb8")
    msg.data = memoryview(np.zeros(len(msg.data) - 1, np.uint8))
    with pytest.raises(ImageConversionError, match="data length"):
        image_to_array(msg)
    msg = array_to_image(random_pixels("rgb8"), "rgb8")
    msg.encoding = "yuv422_yuy2"
    with pytest.raises(ImageConversionError, match="unsupported image encoding"):
        image_to_array(msg)
    msg = array_to_image(random_pixels("rgb8"), "rgb8")
    msg.step = 3
    with pytest.raises(ImageConversionError, match="step"):
        image_to_array(msg)
    with pytest.raises(ImageConversionError, match="cannot be encoded"):
        array_to_image(random_pixels("mono8"), "rgb8")
    with pytest.raises(ImageConversionError, match="dtype"):
        array_to_image(random_pixels("16UC1"), "mono8")


def test_png_round_trip_is_lossless() -> None:
    for encoding in ("rgb8", "mono8", "16UC1", "bgr8"):
        pixels = random_pixels(encoding, 16, 24)
        msg = array_to_compressed(pixels, "png", header=stamped_header(), input_encoding=encoding)
        assert "png" in msg.format and msg.header.frame_id == "camera_front_wide"
        back = compressed_to_array(msg)
        expected = pixels[..., ::-1] if encoding == "bgr8" else pixels
        np.testing.assert_array_equal(back, expected)


def test_jpeg_round_trip_is_close() -> None:
    yy, xx = np.mgrid[0:64, 0:96]
    smooth = np.stack([xx * 2, yy * 3, (xx + yy)], axis=2).astype(np.uint8)
    msg = array_to_compressed(smooth, "jpeg", jpeg_quality=95)
    assert msg.format.startswith("rgb8; jpeg compressed")
    back = compressed_to_rgb(msg)
    assert back.shape == smooth.shape
    assert np.mean(np.abs(back.astype(int) - smooth.astype(int))) < 2.0


def test_malformed_compressed_images_raise() -> None:
    msg = array_to_compressed(random_pixels("rgb8"), "png")
    msg.data = memoryview(b"not an image at all")
    with pytest.raises(ImageConversionError, match="could not decode"):
        compressed_to_rgb(msg)
    msg.format = "h264"
    with pytest.raises(ImageConversionError, match="unsupported compressed format"):
        compressed_to_rgb(msg)
    with pytest.raises(ImageConversionError, match="16-bit"):
        array_to_compressed(random_pixels("16UC1"), "jpeg", input_encoding="16UC1")
