"""Pure-PyTorch reference of filtered_lrelu, written from StyleGAN3's definition.

Per channel of x [N, C, H, W]:
  1. add the bias b;
  2. upsample by `up` (zero insertion), pad by `padding` (given on the upsampled image;
     negative values crop) and filter with fu times up^2 (upfirdn2d);
  3. scale by `gain`, leaky ReLU with `slope`, clamp to [-clamp, clamp] if clamp is given;
  4. filter with fd (no padding) and keep every `down`-th sample.
Output size per axis: (in * up + pad_lo + pad_hi - (fu_taps - 1) - (fd_taps - 1) + down - 1) // down.
The computation runs in x's dtype; autograd gives every gradient. This is the `torch`
backend and the ground truth for the others.
"""
from __future__ import annotations

from typing import Optional

import torch

from .bias_act_ref import bias_act_ref
from .upfirdn2d_ref import upfirdn2d_ref

IDENTITY = torch.ones(1, 1)  # the filter None stands for


def filtered_lrelu_ref(x: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor],
                       b: Optional[torch.Tensor], up: int, down: int, padding: tuple[int, int, int, int],
                       gain: float, slope: float, clamp: Optional[float], flip_filter: bool) -> torch.Tensor:
    """Reference filtered_lrelu on validated arguments (padding as (x0, x1, y0, y1))."""
    fu = IDENTITY.to(x.device) if fu is None else fu
    fd = IDENTITY.to(x.device) if fd is None else fd
    if b is not None:
        x = bias_act_ref(x, b, 1, "linear", 0.0, 1.0, None)
    x = upfirdn2d_ref(x, fu, (up, up), (1, 1), padding, flip_filter, float(up * up))
    x = bias_act_ref(x, None, 1, "lrelu", slope, gain, clamp)
    return upfirdn2d_ref(x, fd, (1, 1), (down, down), (0, 0, 0, 0), flip_filter, 1.0)
