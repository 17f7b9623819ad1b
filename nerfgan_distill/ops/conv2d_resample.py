"""conv2d_resample: 2D convolution with optional FIR up/downsampling (StyleGAN2-ADA API).

A composite of torch convolutions and our upfirdn2d: `backend` chooses where the FIR
steps run, and the convolutions run in torch (cuDNN / oneDNN). Every step is
differentiable to any order, so R1 penalties work. The fast paths below reorder the
reference's steps (see conv2d_resample_ref.py) so that no zero-stuffed tensor is
built and the convolution sees as few pixels as possible.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F

from ..dispatch import resolve
from ._common import check_float_tensor, check_same_device_dtype
from .conv2d_resample_ref import conv2d_resample_ref, resample_padding
from .upfirdn2d import check_filter, filter_size, parse_padding, upfirdn2d

__all__ = ["conv2d_resample"]


def _factor(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"conv2d_resample: {name} must be an int >= 1, got {value!r}")
    return value


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1,
                    down: int = 1, padding=0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False, backend: str = "auto") -> torch.Tensor:
    """Convolve x [N, Cin, H, W] with w [Cout, Cin/groups, kh, kw], upsampling by `up` before and
    downsampling by `down` after with the FIR filter f (from setup_filter; None = identity).

    padding (int, [x, y] or [x0, x1, y0, y1]) is relative to the upsampled image.
    flip_weight=True correlates (like F.conv2d); False convolves.
    """
    op = "conv2d_resample"
    check_float_tensor(op, "x", x)
    check_float_tensor(op, "w", w)
    if x.ndim != 4:
        raise ValueError(f"conv2d_resample: x must be [N, C, H, W], got shape {list(x.shape)}")
    if w.ndim != 4:
        raise ValueError(f"conv2d_resample: w must be [Cout, Cin/groups, kh, kw], got shape {list(w.shape)}")
    check_same_device_dtype(op, "w", w, "x", x)
    up, down, groups = _factor("up", up), _factor("down", down), _factor("groups", groups)
    if w.shape[0] % groups or w.shape[1] * groups != x.shape[1]:
        raise ValueError(f"conv2d_resample: w {list(w.shape)} does not fit x with {x.shape[1]} channels "
                         f"in {groups} group(s): need w.shape[1] * groups == {x.shape[1]} and "
                         f"w.shape[0] divisible by groups")
    if f is not None:
        check_filter(op, f, x)
    for name, flag in (("flip_weight", flip_weight), ("flip_filter", flip_filter)):
        if not isinstance(flag, bool):
            raise TypeError(f"conv2d_resample: {name} must be a bool, got {type(flag).__name__}")
    padding = parse_padding(op, padding)
    name = resolve(backend, x.device)
    if name == "torch":
        return conv2d_resample_ref(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
    return _fast_paths(x, w, f, up, down, padding, groups, flip_weight, flip_filter, name)


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    conv = F.conv_transpose2d if transpose else F.conv2d
    return conv(x, w, stride=stride, padding=padding, groups=groups)


def _fast_paths(x, w, f, up, down, padding, groups, flip_weight, flip_filter, backend):
    fir = functools.partial(upfirdn2d, flip_filter=flip_filter, backend=backend)
    out_channels, in_per_group, kh, kw = w.shape
    px0, px1, py0, py1 = resample_padding(filter_size(f), up, down, padding)
    pointwise = kh == 1 and kw == 1

    if pointwise and down > 1 and up == 1:  # filter and shrink first: the conv sees 1/down^2 pixels
        return _conv(fir(x, f, down=down, padding=[px0, px1, py0, py1]), w, groups=groups, flip_weight=flip_weight)
    if pointwise and up > 1 and down == 1:  # convolve before growing the image
        return fir(_conv(x, w, groups=groups, flip_weight=flip_weight), f, up=up,
                   padding=[px0, px1, py0, py1], gain=up * up)
    if down > 1 and up == 1:  # filter at full size, then a strided conv
        return _conv(fir(x, f, padding=[px0, px1, py0, py1]), w, stride=down, groups=groups,
                     flip_weight=flip_weight)
    if up > 1:
        # A stride-`up` transposed conv inserts the zeros and convolves in one step; the
        # FIR filter then runs on its output. The transposed conv's weight is [Cin, Cout/g, kh, kw].
        wt = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        crop_x, crop_y = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)  # let the conv crop for us
        x = _conv(x, wt, stride=up, padding=[crop_y, crop_x], groups=groups, transpose=True,
                  flip_weight=not flip_weight)
        x = fir(x, f, padding=[px0 + crop_x, px1 + crop_x, py0 + crop_y, py1 + crop_y], gain=up * up)
        return fir(x, f, down=down) if down > 1 else x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:  # a plain padded conv
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = fir(x, None, padding=[px0, px1, py0, py1])
    x = _conv(x, w, groups=groups, flip_weight=flip_weight)
    return fir(x, f, down=down) if down > 1 else x
