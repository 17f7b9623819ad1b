"""Write images as PNG with the standard library only (zlib): no imaging dependency."""
from __future__ import annotations

import os
import struct
import tempfile
import zlib

import torch

__all__ = ["to_uint8", "write_png"]


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """[3, H, W] in EG3D's [-1, 1] -> [H, W, 3] uint8, as EG3D's scripts convert
    (x * 127.5 + 128, clamped, truncated)."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"to_uint8: image must be [3, H, W], got {list(image.shape)}")
    return (image.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path, image: torch.Tensor) -> None:
    """Write a [3, H, W] image in [-1, 1] as an 8-bit RGB PNG (atomically)."""
    pixels = to_uint8(image).contiguous().numpy()
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))  # filter type 0 per row
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(rows, 6)) + _chunk(b"IEND", b""))
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".png.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
