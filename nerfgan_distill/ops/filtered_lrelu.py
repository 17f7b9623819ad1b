"""filtered_lrelu: StyleGAN3's upsample, bias, leaky ReLU, clamp and downsample, with its API.

The `torch` backend is the reference (filtered_lrelu_ref). The kernel backends (cuda,
triton, cpu) run it as StyleGAN3's generic path does: our bias_act and upfirdn2d kernels in
sequence, whose custom ops give gradients of every order and torch.compile support. That
path keeps the upsampled intermediate (4x the output for up=2, 16x for up=4) for backward;
a fused kernel that keeps it in shared memory is the next step (issue 17).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..dispatch import resolve
from ._common import check_finite_number, check_float_tensor, check_same_device_dtype
from .bias_act import bias_act
from .filtered_lrelu_ref import filtered_lrelu_ref
from .upfirdn2d import check_filter, filter_size, parse_padding, upfirdn2d

__all__ = ["filtered_lrelu", "filtered_lrelu_output_size"]

OP = "filtered_lrelu"


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor] = None, fd: Optional[torch.Tensor] = None,
                   b: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding=0,
                   gain: float = math.sqrt(2), slope: float = 0.2, clamp: Optional[float] = None,
                   flip_filter: bool = False, backend: str = "auto") -> torch.Tensor:
    """Filtered leaky ReLU of each channel of x (see filtered_lrelu_ref for the steps).

    Args:
        x: float tensor [N, C, H, W].
        fu, fd: the up- and downsampling filters: [taps] (separable), [fh, fw], or None (identity);
            float, on x's device, without gradients (make them with setup_filter or
            networks.filters.lowpass_filter).
        b: optional bias [C], x's dtype and device.
        up, down: integer factors >= 1.
        padding: int, [x, y] or [x0, x1, y0, y1], on the upsampled image; negative values crop.
        gain: scale before the activation (> 0); slope: the leaky ReLU's negative slope (>= 0);
        clamp: clamp to [-clamp, clamp] after the activation, or None.
        flip_filter: False convolves, True correlates.
        backend: 'auto', 'cuda', 'triton', 'cpu' or 'torch'.
    """
    check_float_tensor(OP, "x", x)
    if x.ndim != 4:
        raise ValueError(f"{OP}: x must be [N, C, H, W], got shape {list(x.shape)}")
    fu_given, fd_given = fu, fd
    fu, fd = check_filter(OP, fu, x), check_filter(OP, fd, x)
    if b is not None:
        check_float_tensor(OP, "b", b)
        if b.ndim != 1 or b.shape[0] != x.shape[1]:
            raise ValueError(f"{OP}: b must have shape [{x.shape[1]}] (x's channels), got {list(b.shape)}")
        check_same_device_dtype(OP, "b", b, "x", x)
    up, down = _factor("up", up), _factor("down", down)
    pad = parse_padding(OP, padding)
    gain = check_finite_number(OP, "gain", gain)
    if gain <= 0:
        raise ValueError(f"{OP}: gain must be > 0, got {gain}")
    slope = check_finite_number(OP, "slope", slope, minimum=0.0)
    clamp = None if clamp is None else check_finite_number(OP, "clamp", clamp, minimum=0.0)
    if not isinstance(flip_filter, bool):
        raise TypeError(f"{OP}: flip_filter must be a bool, got {type(flip_filter).__name__}")
    out_h, out_w = filtered_lrelu_output_size(x.shape[2:], filter_size(fu), filter_size(fd), up, down, pad)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{OP}: with up={up}, down={down}, padding {list(pad)} and {filter_size(fu)[0]}- and "
                         f"{filter_size(fd)[0]}-tap filters, a {x.shape[2]}x{x.shape[3]} input gives no output "
                         f"pixel ({out_h}x{out_w})")
    name = resolve(backend, x.device)
    if name == "torch":
        return filtered_lrelu_ref(x, fu_given, fd_given, b, up, down, pad, gain, slope, clamp, flip_filter)
    if b is not None:
        x = bias_act(x, b, backend=name)
    x = upfirdn2d(x, fu, up=up, padding=list(pad), gain=up * up, flip_filter=flip_filter, backend=name)
    x = bias_act(x, None, act="lrelu", alpha=slope, gain=gain, clamp=clamp, backend=name)
    return upfirdn2d(x, fd, down=down, flip_filter=flip_filter, backend=name)


def filtered_lrelu_output_size(in_hw, fu_size: tuple[int, int], fd_size: tuple[int, int], up: int, down: int,
                               padding: tuple[int, int, int, int]) -> tuple[int, int]:
    """(H', W') for an [H, W] input, (fw, fh) filter sizes and padding (x0, x1, y0, y1)."""
    (fu_w, fu_h), (fd_w, fd_h) = fu_size, fd_size
    h, w = int(in_hw[0]), int(in_hw[1])
    out_w = (w * up + padding[0] + padding[1] - (fu_w - 1) - (fd_w - 1) + down - 1) // down
    out_h = (h * up + padding[2] + padding[3] - (fu_h - 1) - (fd_h - 1) + down - 1) // down
    return out_h, out_w


def _factor(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{OP}: {name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{OP}: {name} must be >= 1, got {value}")
    return value
