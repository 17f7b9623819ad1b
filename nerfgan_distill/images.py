"""Image files: PNG stills, grids, GIF and MP4 clips (imageio), written atomically.

Images are float tensors [3, H, W] in EG3D's [-1, 1]; files hold 8-bit RGB converted as EG3D's
scripts do (x * 127.5 + 128, clamped, truncated).
"""
from __future__ import annotations

import os
import tempfile
from typing import Sequence

import numpy as np
import torch

__all__ = ["to_uint8", "write_png", "image_grid", "write_gif", "write_mp4"]


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """[3, H, W] in [-1, 1] -> [H, W, 3] uint8 on the CPU."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"to_uint8: image must be [3, H, W], got {shape}")
    return (image.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu()


def image_grid(images: Sequence[torch.Tensor], columns: int, padding: int = 0) -> torch.Tensor:
    """Images [3, H, W] of one size, row by row in `columns` columns, `padding` pixels of -1 (black)
    between them -> one [3, H', W'] image (a short last row is filled with black)."""
    images = list(images)
    if not images:
        raise ValueError("image_grid: no images")
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"image_grid: columns must be an int >= 1, got {columns!r}")
    if padding < 0:
        raise ValueError(f"image_grid: padding must be >= 0, got {padding}")
    shape = images[0].shape
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[0] != 3 or image.shape != shape:
            raise ValueError(f"image_grid: image {i} is {list(image.shape)}, expected [3, H, W] like image 0 "
                             f"{list(shape)}")
    _, h, w = shape
    rows = -(-len(images) // columns)
    out = images[0].new_full((3, rows * h + (rows - 1) * padding, columns * w + (columns - 1) * padding), -1.0)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        out[:, r * (h + padding):r * (h + padding) + h, c * (w + padding):c * (w + padding) + w] = image
    return out


def _atomic_imwrite(path, write) -> None:
    """write(tmp_path) into a temporary file beside `path` (same extension: imageio picks the format
    from it), then rename it over `path`."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _frames(fn: str, frames) -> np.ndarray:
    frames = list(frames)
    if not frames:
        raise ValueError(f"{fn}: no frames")
    arrays = [to_uint8(f).numpy() for f in frames]
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"{fn}: frames differ in size ({sorted({a.shape for a in arrays})})")
    return np.stack(arrays)


def _check_fps(fn: str, fps) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise ValueError(f"{fn}: fps must be a number > 0, got {fps!r}")
    return float(fps)


def write_png(path, image: torch.Tensor) -> None:
    """Write a [3, H, W] image in [-1, 1] as an 8-bit RGB PNG (atomically)."""
    import imageio.v3 as iio

    pixels = to_uint8(image).numpy()
    _atomic_imwrite(path, lambda tmp: iio.imwrite(tmp, pixels, extension=".png"))


def write_gif(path, frames: Sequence[torch.Tensor], fps: float = 24) -> None:
    """Write frames [3, H, W] in [-1, 1] as a looping GIF (atomically). GIF frame times are in 10 ms
    units, so fps is rounded to them; Pillow merges a frame identical to the one before into it
    (one frame shown twice as long: the timing stays right, the frame count drops)."""
    import imageio.v3 as iio

    fps = _check_fps("write_gif", fps)
    pixels = _frames("write_gif", frames)
    duration = 1000.0 / fps  # milliseconds per frame (GIF stores 10 ms units)
    _atomic_imwrite(path, lambda tmp: iio.imwrite(tmp, pixels, extension=".gif", duration=duration, loop=0,
                                                  optimize=False, disposal=1))


def write_mp4(path, frames: Sequence[torch.Tensor], fps: float = 24) -> None:
    """Write frames [3, H, W] in [-1, 1] as an H.264 MP4 (ffmpeg through imageio-ffmpeg; atomically).
    Odd sizes are padded with black to even ones (yuv420p needs them)."""
    import imageio.v2 as iio2

    fps = _check_fps("write_mp4", fps)
    pixels = _frames("write_mp4", frames)
    n, h, w, _ = pixels.shape
    if h % 2 or w % 2:
        pixels = np.pad(pixels, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))

    def write(tmp):
        with iio2.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=1,
                             pixelformat="yuv420p", ffmpeg_log_level="error") as writer:
            for frame in pixels:
                writer.append_data(frame)

    _atomic_imwrite(path, write)
