"""Pure-PyTorch reference of upfirdn2d, written from StyleGAN2-ADA's definition.

Per channel of x [N, C, H, W]:
  1. upsample: each sample is followed by up - 1 zeros (along x and y);
  2. pad with zeros (negative padding crops);
  3. convolve with the filter times gain^(f.ndim / 2) (flipped unless flip_filter,
     since conv2d correlates), keeping only positions where the filter fits;
     a 1-D filter is applied separably, horizontally then vertically;
  4. keep every down-th sample.
Output width: (W * up + pad_x0 + pad_x1 - fw) // down + 1, likewise for the height.
The computation runs in x's dtype. This is the `torch` backend and the ground truth.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def upfirdn2d_ref(x: torch.Tensor, f: torch.Tensor, up: tuple[int, int], down: tuple[int, int],
                  padding: tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    """Reference upfirdn2d on validated arguments: up/down as (x, y), padding as (x0, x1, y0, y1)."""
    n, c, h, w = x.shape
    up_x, up_y = up
    down_x, down_y = down
    pad_x0, pad_x1, pad_y0, pad_y1 = padding
    if c == 0:  # nothing to filter, and F.conv2d refuses groups=0
        out_w = (w * up_x + pad_x0 + pad_x1 - f.shape[-1]) // down_x + 1
        out_h = (h * up_y + pad_y0 + pad_y1 - f.shape[0]) // down_y + 1
        return x.reshape(n, 0, out_h, out_w)  # still in x's graph

    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up_x - 1, 0, 0, 0, up_y - 1]).reshape(n, c, h * up_y, w * up_x)

    x = F.pad(x, [max(pad_x0, 0), max(pad_x1, 0), max(pad_y0, 0), max(pad_y1, 0)])
    x = x[:, :, max(-pad_y0, 0): x.shape[2] - max(-pad_y1, 0), max(-pad_x0, 0): x.shape[3] - max(-pad_x1, 0)]

    f = (f * gain ** (f.ndim / 2)).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f.expand(c, 1, *f.shape), groups=c)
    else:
        x = F.conv2d(x, f.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        x = F.conv2d(x, f.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    return x[:, :, ::down_y, ::down_x]
