"""Cheap per-frame checks on arrival: a content digest (frozen cameras), compressed integrity.

Both run on the raw bytes of every camera message before it is synchronized, so they
must cost far less than decoding:

- :func:`frame_digest` hashes the length and at most :data:`DIGEST_SAMPLE_BYTES` evenly
  spaced bytes of a frame. Two frames of a live camera differ almost everywhere (sensor
  noise; a compressed stream changes from the first changed block on), so equal digests
  mean a repeated buffer: the signature of a frozen camera.
- :func:`compressed_integrity_error` checks a jpeg/png's format string, its magic bytes
  and its end marker (jpeg EOI ``FF D9`` in the last 64 bytes, png ``IEND`` chunk): a truncated or
  mislabelled compressed image is refused without being decoded. Corruption inside the
  entropy-coded data passes this check and is caught when the policy decodes the frame.
"""

from __future__ import annotations

import zlib

import numpy as np

DIGEST_SAMPLE_BYTES = 65536
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
# Some encoders pad after the EOI marker; FF D9 cannot occur inside entropy-coded data
# (an FF there is followed by 00 or a restart marker D0-D7).
JPEG_TAIL_BYTES = 64
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"IEND\xaeB`\x82"  # chunk type + its fixed CRC: the last 8 bytes of a png


def frame_digest(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """Digest of a frame's bytes: length and a CRC-32 of a strided sample (see module)."""
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) \
        else data.reshape(-1).view(np.uint8)
    stride = max(1, -(-buffer.size // DIGEST_SAMPLE_BYTES))
    sample = buffer[::stride]
    return (buffer.size << 32) | zlib.crc32(np.ascontiguousarray(sample).data)


def compressed_integrity_error(fmt: str, data: bytes | bytearray | memoryview) -> str | None:
    """Why a compressed image cannot be a whole jpeg/png, or None when it can."""
    if len(data) == 0:
        return "compressed image has no data"
    head, tail = bytes(data[:8]), bytes(data[-JPEG_TAIL_BYTES:])
    kind = fmt.lower()
    if "jpeg" in kind or "jpg" in kind:
        if not head.startswith(JPEG_SOI):
            return f"{fmt!r} data does not start with the jpeg SOI marker"
        if JPEG_EOI not in tail:
            return (f"{fmt!r} data has no jpeg EOI marker in its last "
                    f"{JPEG_TAIL_BYTES} B (truncated)")
        return None
    if "png" in kind:
        if not head.startswith(PNG_SIGNATURE):
            return f"{fmt!r} data does not start with the png signature"
        if not tail.endswith(PNG_IEND):
            return f"{fmt!r} data does not end with the png IEND chunk (truncated)"
        return None
    return f"unsupported compressed format {fmt!r} (jpeg or png)"
