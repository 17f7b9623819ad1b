"""Images and videos out of the generators: PNG, GIF (imageio + Pillow) and MP4 (imageio's
ffmpeg plugin, the [video] extra), each written atomically; `image_grid` for contact sheets.

Images are EG3D's [3, H, W] tensors in [-1, 1]; frames of a GIF or MP4 may also be uint8
[H, W, 3] arrays (already converted)."""
from __future__ import annotations

import os
from typing import Sequence, Union

import imageio.v3 as iio
import numpy as np
import torch

from .formats import atomic_file, atomic_write

__all__ = ["to_uint8", "png_bytes", "write_png", "error_image", "image_grid", "write_gif", "write_mp4"]

PathLike = Union[str, os.PathLike]
VIDEO_EXTRA = 'pip install "nerfgan-distill[video]"'


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """[3, H, W] in EG3D's [-1, 1] -> [H, W, 3] uint8 on the CPU, as EG3D's scripts convert
    (x * 127.5 + 128, clamped, truncated)."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"to_uint8: image must be a [3, H, W] tensor, got {shape}")
    return (image.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu()


def png_bytes(image: torch.Tensor) -> bytes:
    """A [3, H, W] image in [-1, 1] as the bytes of an 8-bit RGB PNG."""
    return iio.imwrite("<bytes>", to_uint8(image).contiguous().numpy(), plugin="pillow", extension=".png")


def write_png(path: PathLike, image: torch.Tensor) -> None:
    """Write a [3, H, W] image in [-1, 1] as an 8-bit RGB PNG (atomically)."""
    data = png_bytes(image)
    atomic_write(path, lambda f: f.write(data))


def error_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| of [-1, 1] images [3, H, W] as an image on a fixed scale: black 0, white 2 (the largest possible)."""
    return (a - b).abs().mean(dim=0, keepdim=True).expand_as(a).clamp(0, 2) - 1


def image_grid(images, columns: int, padding: int = 0, pad_value: float = -1.0) -> torch.Tensor:
    """A list (or [N, 3, H, W] batch) of [3, H, W] images -> one [3, H', W'] image: row by row,
    `columns` per row (fewer if there are fewer images), `padding` pixels of `pad_value`
    between cells, unfilled cells of the last row left at `pad_value`."""
    images = _grid_images(images)
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"image_grid: columns must be a positive int, got {columns!r}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"image_grid: padding must be an int >= 0, got {padding!r}")
    n, (channels, height, width) = len(images), images[0].shape
    columns = min(columns, n)
    rows = -(-n // columns)
    grid = images[0].new_full((channels, rows * height + (rows - 1) * padding,
                               columns * width + (columns - 1) * padding), pad_value)
    for i, image in enumerate(images):
        top, left = (i // columns) * (height + padding), (i % columns) * (width + padding)
        grid[:, top:top + height, left:left + width] = image
    return grid


def _grid_images(images) -> list:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"image_grid: a batch of images must be [N, 3, H, W], got {list(images.shape)}")
        images = list(images)
    if not isinstance(images, (list, tuple)) or not images:
        raise ValueError("image_grid: images must be a non-empty list of [3, H, W] tensors or an [N, 3, H, W] batch")
    first = images[0]
    for i, image in enumerate(images):
        if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
            shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"image_grid: images[{i}] must be a [3, H, W] tensor, got {shape}")
        if image.shape != first.shape:
            raise ValueError(f"image_grid: images[{i}] is {list(image.shape)}, images[0] is {list(first.shape)}")
    return list(images)


def write_gif(path: PathLike, frames: Sequence, fps: float) -> None:
    """Write frames as an animated GIF that loops forever (atomically). GIF stores frame times
    in hundredths of a second, so the speed is fps rounded to that."""
    pixels = _video_frames(frames, "write_gif")
    duration_ms = 1000.0 / _check_fps(fps, "write_gif")
    data = iio.imwrite("<bytes>", pixels, plugin="pillow", extension=".gif", duration=duration_ms, loop=0)
    atomic_write(path, lambda f: f.write(data))


def write_mp4(path: PathLike, frames: Sequence, fps: float) -> None:
    """Write frames as an H.264 MP4 (atomically) with imageio's ffmpeg plugin, whose binary
    comes with the imageio-ffmpeg package (the [video] extra)."""
    try:
        import imageio_ffmpeg  # noqa: F401  (imageio's plugin needs it; checked first for a clear message)
    except ImportError:
        raise RuntimeError(f"write_mp4 needs the imageio-ffmpeg package: {VIDEO_EXTRA}") from None
    pixels = _video_frames(frames, "write_mp4")
    fps = _check_fps(fps, "write_mp4")
    # H.264 in yuv420p halves the chroma planes: an odd size gets one repeated edge row/column.
    pixels = np.pad(pixels, ((0, 0), (0, pixels.shape[1] % 2), (0, pixels.shape[2] % 2), (0, 0)), mode="edge")
    with atomic_file(path, ".mp4") as tmp:  # ffmpeg writes to a name, and picks the container by it
        iio.imwrite(tmp, pixels, plugin="FFMPEG", fps=fps, codec="libx264", macro_block_size=1,
                    ffmpeg_log_level="error")


def _check_fps(fps, who: str) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < float("inf"):
        raise ValueError(f"{who}: fps must be a positive number, got {fps!r}")
    return float(fps)


def _video_frames(frames, who: str) -> np.ndarray:
    """Frames ([3, H, W] tensors in [-1, 1] or uint8 [H, W, 3] arrays/tensors) -> [N, H, W, 3] uint8."""
    if isinstance(frames, (torch.Tensor, np.ndarray)):
        frames = list(frames)
    if not isinstance(frames, (list, tuple)) or not frames:
        raise ValueError(f"{who}: frames must be a non-empty list of images")
    pixels = [_frame_pixels(frame, f"{who}: frames[{i}]") for i, frame in enumerate(frames)]
    for i, frame in enumerate(pixels):
        if frame.shape != pixels[0].shape:
            raise ValueError(f"{who}: frames[{i}] is {frame.shape[0]}x{frame.shape[1]}, frames[0] is "
                             f"{pixels[0].shape[0]}x{pixels[0].shape[1]}")
    return np.stack(pixels)


def _frame_pixels(frame, where: str) -> np.ndarray:
    if isinstance(frame, torch.Tensor) and frame.dtype != torch.uint8:
        if frame.ndim != 3 or frame.shape[0] != 3:
            raise ValueError(f"{where} must be [3, H, W] in [-1, 1] (or uint8 [H, W, 3]), got {list(frame.shape)}")
        return to_uint8(frame).numpy()
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu().numpy()
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{frame.dtype} {list(frame.shape)}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"{where} must be [3, H, W] in [-1, 1] or uint8 [H, W, 3], got {got}")
    return np.ascontiguousarray(frame)
