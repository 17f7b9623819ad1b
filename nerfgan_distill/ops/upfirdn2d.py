"""upfirdn2d: upsample, FIR filter and downsample 2D images, with StyleGAN2-ADA's API
(setup_filter, upsample2d, downsample2d, filter2d).

upfirdn2d is linear in x, and its gradient is upfirdn2d itself with up and down
swapped, the filter flipped and the padding recomputed. The custom op's backward
calls the custom op again, so gradients of any order work on every backend (the
R1 penalty of a discriminator differentiates through it twice). The filter gets no
gradient: it is a fixed buffer in StyleGAN2 and EG3D.
"""
from __future__ import annotations

from typing import List, Optional

import torch

from .. import _native
from ..dispatch import resolve
from ._common import check_finite_number, check_float_tensor, compute_dtype, device_context, empty_output, run_native
from .upfirdn2d_ref import upfirdn2d_ref

__all__ = ["upfirdn2d", "setup_filter", "upsample2d", "downsample2d", "filter2d"]


# --- argument parsing ------------------------------------------------------------------------

def _ints(op: str, name: str, value, sizes: tuple[int, ...]) -> list[int]:
    items = [value] if isinstance(value, int) else value
    if (isinstance(value, bool) or not isinstance(items, (list, tuple)) or len(items) not in sizes
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in items)):
        forms = " or ".join(f"a list of {n} ints" for n in sizes if n > 1)
        raise TypeError(f"{op}: {name} must be an int or {forms}, got {value!r}")
    return list(items)


def parse_scaling(op: str, name: str, value) -> tuple[int, int]:
    """An int or [x, y] -> (x, y), each >= 1."""
    items = _ints(op, name, value, (1, 2))
    sx, sy = items * 2 if len(items) == 1 else items
    if sx < 1 or sy < 1:
        raise ValueError(f"{op}: {name} must be >= 1, got {value!r}")
    return sx, sy


def parse_padding(op: str, value) -> tuple[int, int, int, int]:
    """An int, [x, y] or [x0, x1, y0, y1] -> (x0, x1, y0, y1); negative values crop."""
    items = _ints(op, "padding", value, (1, 2, 4))
    if len(items) == 1:
        items = items * 4
    elif len(items) == 2:
        items = [items[0], items[0], items[1], items[1]]
    return tuple(items)


def filter_size(f: Optional[torch.Tensor]) -> tuple[int, int]:
    """(fw, fh) of a 2-D [fh, fw] filter or a separable 1-D [taps] filter."""
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


# 1-D filters of at least this many taps run as two 1-D passes (setup_filter's separable rule).
SEPARABLE_MIN_TAPS = 8


def check_filter(op: str, f, x: torch.Tensor) -> torch.Tensor:
    """Validate a FIR filter for x (None becomes the 1x1 identity filter)."""
    if f is None:
        return torch.ones(1, 1, dtype=torch.float32, device=x.device)
    check_float_tensor(op, "f", f)
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"{op}: f must be a non-empty [taps] (separable) or [fh, fw] filter, "
                         f"got shape {list(f.shape)}")
    if f.device != x.device:
        raise ValueError(f"{op}: f is on {f.device} but x is on {x.device}; move them to the same device")
    if f.requires_grad:
        raise ValueError(f"{op}: f must not require grad (the filter is a fixed buffer); pass f.detach()")
    return f


# --- the public ops --------------------------------------------------------------------------

def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up=1, down=1, padding=0,
              flip_filter: bool = False, gain: float = 1, backend: str = "auto") -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR filter and downsample each channel of x.

    Args:
        x: float tensor [N, C, H, W] (any layout; channels-last stays channels-last).
        f: filter, [fh, fw] or separable [taps] (see setup_filter), or None for identity.
        up, down: int or [x, y] integer factors, >= 1.
        padding: int, [x, y] or [x0, x1, y0, y1]; negative values crop.
        flip_filter: False convolves (flips the filter), True correlates.
        gain: overall scale of the filter.
        backend: 'auto', 'cuda', 'triton', 'cpu' or 'torch'.
    """
    op = "upfirdn2d"
    check_float_tensor(op, "x", x)
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be [N, C, H, W], got shape {list(x.shape)}")
    f = check_filter(op, f, x)
    up_xy, down_xy = parse_scaling(op, "up", up), parse_scaling(op, "down", down)
    pad = parse_padding(op, padding)
    if not isinstance(flip_filter, bool):
        raise TypeError(f"upfirdn2d: flip_filter must be a bool, got {type(flip_filter).__name__}")
    gain = check_finite_number(op, "gain", gain)
    fw, fh = filter_size(f)
    up_w = x.shape[3] * up_xy[0] + pad[0] + pad[1]
    up_h = x.shape[2] * up_xy[1] + pad[2] + pad[3]
    if up_w < fw or up_h < fh:
        raise ValueError(f"upfirdn2d: padding {list(pad)} leaves a {up_h}x{up_w} upsampled, padded input, "
                         f"smaller than the {fh}x{fw} filter")
    name = resolve(backend, x.device)
    if name == "torch":
        return upfirdn2d_ref(x, f, up_xy, down_xy, pad, flip_filter, gain)
    op = torch.ops.nerfgan_distill.upfirdn2d
    if f.ndim == 1 and f.numel() >= SEPARABLE_MIN_TAPS:
        # A long separable filter runs as a row pass then a column pass: 2 * taps multiply-adds per
        # output instead of taps^2 (StyleGAN3's 12- and 24-tap Kaiser filters: 6x and 12x fewer).
        x = op(x, f.reshape(1, -1), [up_xy[0], 1, down_xy[0], 1], [pad[0], pad[1], 0, 0], flip_filter, gain, name)
        return op(x, f.reshape(-1, 1), [1, up_xy[1], 1, down_xy[1]], [0, 0, pad[2], pad[3]], flip_filter, 1.0, name)
    return op(x, f, [*up_xy, *down_xy], list(pad), flip_filter, gain, name)


def setup_filter(f, device=torch.device("cpu"), normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: Optional[bool] = None) -> torch.Tensor:
    """Make a float32 filter for upfirdn2d from a list or tensor of taps.

    A 1-D filter of fewer than 8 taps becomes the 2-D outer product (non-separable),
    unless `separable` says otherwise; `normalize` makes the taps sum to 1; `gain`
    scales by gain^(ndim / 2), so the 2-D result is scaled by gain in both cases.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f"setup_filter: f must be a scalar, [taps] or [fh, fw], got shape {list(f.shape)}")
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= SEPARABLE_MIN_TAPS
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError("setup_filter: a 2-D filter cannot be separable")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, backend="auto"):
    """Upsample by `up` with filter f (gain up_x * up_y keeps the image's level)."""
    up_x, up_y = parse_scaling("upsample2d", "up", up)
    px0, px1, py0, py1 = parse_padding("upsample2d", padding)
    fw, fh = filter_size(f)
    pad = [px0 + (fw + up_x - 1) // 2, px1 + (fw - up_x) // 2, py0 + (fh + up_y - 1) // 2, py1 + (fh - up_y) // 2]
    return upfirdn2d(x, f, up=[up_x, up_y], padding=pad, flip_filter=flip_filter,
                     gain=gain * up_x * up_y, backend=backend)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, backend="auto"):
    """Filter with f, then keep every `down`-th pixel."""
    down_x, down_y = parse_scaling("downsample2d", "down", down)
    px0, px1, py0, py1 = parse_padding("downsample2d", padding)
    fw, fh = filter_size(f)
    pad = [px0 + (fw - down_x + 1) // 2, px1 + (fw - down_x) // 2,
           py0 + (fh - down_y + 1) // 2, py1 + (fh - down_y) // 2]
    return upfirdn2d(x, f, down=[down_x, down_y], padding=pad, flip_filter=flip_filter, gain=gain,
                     backend=backend)


def filter2d(x, f, padding=0, flip_filter=False, gain=1, backend="auto"):
    """Filter with f, keeping the size (plus padding)."""
    px0, px1, py0, py1 = parse_padding("filter2d", padding)
    fw, fh = filter_size(f)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, backend=backend)


# --- kernels ---------------------------------------------------------------------------------

def output_shape(x_shape, f_size: tuple[int, int], scaling, padding) -> list[int]:
    """The [N, C, H', W'] upfirdn2d gives for x_shape, a (fw, fh) filter, scaling
    (up_x, up_y, down_x, down_y) and padding (x0, x1, y0, y1)."""
    up_x, up_y, down_x, down_y = scaling
    fw, fh = f_size
    out_w = (x_shape[3] * up_x + padding[0] + padding[1] - fw) // down_x + 1
    out_h = (x_shape[2] * up_y + padding[2] + padding[3] - fh) // down_y + 1
    return [x_shape[0], x_shape[1], out_h, out_w]


def kernel_taps(f: torch.Tensor, flip_filter: bool, gain: float, dtype: torch.dtype) -> torch.Tensor:
    """The dense [fh, fw] correlation taps the kernels read, gain applied, in compute precision."""
    taps = f.to(compute_dtype(dtype))
    taps = (taps if taps.ndim == 2 else torch.outer(taps, taps)) * gain
    return (taps if flip_filter else taps.flip([0, 1])).contiguous()


def _run(x, f, scaling, padding, flip_filter, gain, backend) -> torch.Tensor:
    out = empty_output(x, output_shape(x.shape, filter_size(f), scaling, padding))
    if out.numel() == 0:
        return out
    if x.numel() == 0:  # all padding; the native kernels refuse x's null pointer
        return out.zero_()
    taps = kernel_taps(f, flip_filter, gain, x.dtype)
    if backend == "triton":
        from ..triton_kernels import upfirdn2d as kernels

        with device_context(x.device):
            kernels.forward(x, taps, out, scaling, padding[0], padding[2])
        return out
    (n, c, h, w), (sx_n, sx_c, sx_h, sx_w), (so_n, so_c, so_h, so_w) = x.shape, x.stride(), out.stride()
    up_x, up_y, down_x, down_y = scaling
    run_native("upfirdn2d_forward", backend, x.device, "Upfirdn2dParams", x=x, f=taps, out=out,
               n=n, c=c, h=h, w=w, out_h=out.shape[2], out_w=out.shape[3],
               sx_n=sx_n, sx_c=sx_c, sx_h=sx_h, sx_w=sx_w, so_n=so_n, so_c=so_c, so_h=so_h, so_w=so_w,
               up_x=up_x, up_y=up_y, down_x=down_x, down_y=down_y, pad_x0=padding[0], pad_y0=padding[2],
               fh=taps.shape[0], fw=taps.shape[1], dtype=_native.DTYPE_CODES[x.dtype])
    return out


@torch.library.custom_op("nerfgan_distill::upfirdn2d", mutates_args=())
def _upfirdn2d_op(x: torch.Tensor, f: torch.Tensor, scaling: List[int], padding: List[int],
                  flip_filter: bool, gain: float, backend: str) -> torch.Tensor:
    return _run(x, f, scaling, padding, flip_filter, gain, backend)


@_upfirdn2d_op.register_fake
def _(x, f, scaling, padding, flip_filter, gain, backend):
    return empty_output(x, output_shape(x.shape, filter_size(f), scaling, padding))


def _save(ctx, inputs, output):
    x, f, scaling, padding, flip_filter, gain, backend = inputs
    ctx.save_for_backward(f)
    ctx.in_hw = (x.shape[2], x.shape[3])
    ctx.args = (scaling, padding, flip_filter, gain, backend)


def _backward(ctx, dy):
    # The adjoint of upfirdn2d: swap up and down, flip the filter, and pad so that the
    # result has x's size again.
    (f,) = ctx.saved_tensors
    (up_x, up_y, down_x, down_y), (px0, px1, py0, py1), flip_filter, gain, backend = ctx.args
    in_h, in_w = ctx.in_hw
    out_h, out_w = dy.shape[2], dy.shape[3]
    fw, fh = filter_size(f)
    pad = [fw - px0 - 1, in_w * up_x - out_w * down_x + px0 - up_x + 1,
           fh - py0 - 1, in_h * up_y - out_h * down_y + py0 - up_y + 1]
    dx = None
    if ctx.needs_input_grad[0]:
        dx = torch.ops.nerfgan_distill.upfirdn2d(dy, f, [down_x, down_y, up_x, up_y], pad,
                                                 not flip_filter, gain, backend)
    return dx, None, None, None, None, None, None


torch.library.register_autograd("nerfgan_distill::upfirdn2d", _backward, setup_context=_save)
