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


def check_factor(op: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{op}: {name} must be an int >= 1, got {value!r}")
    return value


def check_kernel(op: str, name: str, w: torch.Tensor) -> None:
    if w.shape[2] < 1 or w.shape[3] < 1:
        raise ValueError(f"{op}: {name} must have a kernel of at least 1x1, got shape {list(w.shape)}")


def output_size(op: str, x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor], up: int, down: int,
                padding: tuple[int, int, int, int]) -> tuple[int, int]:
    """(H', W') of conv2d_resample, following the reference's steps. An empty output is an
    error, as in the reference (torch's conv2d refuses a kernel larger than its input)."""
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = resample_padding((fw, fh), up, down, padding)
    out_h = _resampled_length(x.shape[2], w.shape[2], fh, up, down, py0 + py1)
    out_w = _resampled_length(x.shape[3], w.shape[3], fw, up, down, px0 + px1)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{op}: padding {list(padding)} leaves no output ({out_h}x{out_w}) for a "
                         f"{x.shape[2]}x{x.shape[3]} x, a {w.shape[2]}x{w.shape[3]} kernel, up={up}, down={down} "
                         f"and a {fh}x{fw} filter")
    return out_h, out_w


def _resampled_length(size: int, k: int, taps: int, up: int, down: int, pad: int) -> int:
    """One axis through the reference: upsample and pad, FIR (valid; only when up > 1),
    convolve (valid), FIR-downsample (only when down > 1)."""
    size = size * up + pad - (taps - 1 if up > 1 else 0) - (k - 1)
    return (size - taps) // down + 1 if down > 1 else size


def _zeros_in_graph(shape, *inputs: torch.Tensor) -> torch.Tensor:
    """Zeros of `shape` that keep `inputs` in the autograd graph, so their gradients come back
    as zeros rather than as an error."""
    anchor = sum(t.reshape(-1)[:0].sum() for t in inputs)  # exactly 0, whatever the values
    return inputs[0].new_zeros(shape) + anchor


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1,
                    down: int = 1, padding=0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False, backend: str = "auto") -> torch.Tensor:
    """Convolve x [N, Cin, H, W] with w [Cout, Cin/groups, kh, kw], upsampling by `up` before and
    downsampling by `down` after with the FIR filter f (from setup_filter; None = identity).

    padding (int, [x, y] or [x0, x1, y0, y1]) is relative to the upsampled image.
    flip_weight=True correlates (like F.conv2d); False convolves.
    An x or w without elements (a size of 0) gives zeros; padding that leaves no output
    pixel raises ValueError, as torch's conv2d in the reference does.
    """
    op = "conv2d_resample"
    check_float_tensor(op, "x", x)
    check_float_tensor(op, "w", w)
    if x.ndim != 4:
        raise ValueError(f"conv2d_resample: x must be [N, C, H, W], got shape {list(x.shape)}")
    if w.ndim != 4:
        raise ValueError(f"conv2d_resample: w must be [Cout, Cin/groups, kh, kw], got shape {list(w.shape)}")
    check_same_device_dtype(op, "w", w, "x", x)
    check_kernel(op, "w", w)
    up, down, groups = check_factor(op, "up", up), check_factor(op, "down", down), check_factor(op, "groups", groups)
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
    out_h, out_w = output_size(op, x, w, f, up, down, padding)
    name = resolve(backend, x.device)
    if x.numel() == 0 or w.numel() == 0:  # all zeros: the conv's sums are empty or over padding only
        return _zeros_in_graph((x.shape[0], w.shape[0], out_h, out_w), x, w)
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
