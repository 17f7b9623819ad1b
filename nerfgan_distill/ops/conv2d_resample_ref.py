"""Pure-PyTorch reference of conv2d_resample (StyleGAN2-ADA): a 2D convolution with
optional FIR up- and downsampling, padding applied once, at the start.

The definition it computes, in one straight line:
  1. upsample x by `up` with the FIR filter f (zero insertion, gain up^2) and pad;
  2. convolve with w (correlation when flip_weight, convolution otherwise), valid;
  3. if down > 1, FIR-filter with f and keep every down-th pixel.
The fast paths of the public op reorder these steps; they are equal to this up to
rounding. Padding is given with respect to the upsampled image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .upfirdn2d_ref import upfirdn2d_ref


def resample_padding(f_size: tuple[int, int], up: int, down: int,
                     padding: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Add what the FIR filter of size (fw, fh) needs around up/downsampling to `padding`."""
    fw, fh = f_size
    px0, px1, py0, py1 = padding
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    return px0, px1, py0, py1


def conv2d_resample_ref(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None, up: int, down: int,
                        padding: tuple[int, int, int, int], groups: int, flip_weight: bool,
                        flip_filter: bool) -> torch.Tensor:
    """Reference conv2d_resample on validated arguments (padding as (x0, x1, y0, y1))."""
    identity = torch.ones(1, 1, dtype=torch.float32, device=x.device)
    f_size = (1, 1) if f is None else (int(f.shape[-1]), int(f.shape[0]))
    pad = resample_padding(f_size, up, down, padding)
    x = upfirdn2d_ref(x, f if (up > 1 and f is not None) else identity, (up, up), (1, 1), pad, flip_filter, up * up)
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    if down > 1:
        x = upfirdn2d_ref(x, identity if f is None else f, (1, 1), (down, down), (0, 0, 0, 0), flip_filter, 1)
    return x
