"""filtered_lrelu: StyleGAN3's upsample, bias, leaky ReLU, clamp and downsample, with its API.

The `torch` backend is the reference (filtered_lrelu_ref). The kernel backends (cuda, triton,
cpu) run the whole op as one fused pass (csrc/include/nerfgan_distill/filtered_lrelu.h): the
upsampled intermediate stays in cache or shared memory, and what the gradient needs of it is a
1-byte sign code per sample (positive, negative or clamped), a quarter of a float32 copy.

The gradient of x is the same pipeline run on dy with the filters' adjoints and the codes as
the activation's derivative (StyleGAN3's backward does the same with a 2-bit mask); db is its
sum. That masked pass is linear in its input, its own adjoint is the masked pass again, so
gradients of every order exist (the codes are piecewise constant in x).
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch

from .. import _native
from ..dispatch import resolve
from ._common import (
    check_finite_number,
    check_float_tensor,
    check_same_device_dtype,
    compute_dtype,
    device_context,
    empty_output,
    run_native,
)
from .filtered_lrelu_ref import filtered_lrelu_ref
from .upfirdn2d import check_filter, filter_size, parse_padding

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
    fa, fb = kernel_taps(fu_given, flip_filter, x), kernel_taps(fd_given, flip_filter, x)
    save_codes = torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad))
    y, _ = torch.ops.nerfgan_distill.filtered_lrelu(x, b, fa, fb, up, down, list(pad), gain, slope,
                                                    -1.0 if clamp is None else clamp, save_codes, name)
    return y


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


# --- kernels ---------------------------------------------------------------------------------

def kernel_taps(f: Optional[torch.Tensor], flip_filter: bool, x: torch.Tensor) -> torch.Tensor:
    """The correlation taps the kernels read, in compute precision: a 1-D filter stays 1-D
    (separable, the same taps along x and y), a 2-D one is dense; None is the 1-tap identity."""
    if f is None:
        return torch.ones(1, dtype=compute_dtype(x.dtype), device=x.device)
    taps = f.to(compute_dtype(x.dtype))
    return (taps if flip_filter else _flipped(taps)).contiguous()


def _flipped(f: torch.Tensor) -> torch.Tensor:
    return f.flip(list(range(f.ndim)))


def _intermediate_size(x_shape, fa: torch.Tensor, up: int, padding) -> tuple[int, int]:
    """(t_h, t_w) of the forward pass's upsampled, filtered image."""
    fa_w, fa_h = filter_size(fa)
    return (x_shape[2] * up + padding[2] + padding[3] - fa_h + 1,
            x_shape[3] * up + padding[0] + padding[1] - fa_w + 1)


def _launch(kernel: str, backend: str, g: torch.Tensor, b, fa, fb, out, codes, t_hw, up, pad_a, down, pad_b,
            gain: float, slope: float, clamp: float) -> None:
    """Run one pass: stage A (fa, up, pad_a = [x0, y0]) from g to the t_hw intermediate, the
    pointwise step, stage B (fb, down, pad_b) into out. An empty `codes` is not written."""
    t_h, t_w = t_hw
    if g.numel() == 0:  # all padding: t is 0, so is every output; the kernels refuse g's null pointer
        out.zero_()
        codes.zero_()  # kPositive
        return
    if backend == "triton":
        from ..triton_kernels import filtered_lrelu as kernels

        with device_context(g.device):
            getattr(kernels, kernel)(g, b, fa, fb, out, codes, t_hw, up, pad_a, down, pad_b, gain, slope, clamp)
        return
    (n, c, h, w), (sx_n, sx_c, sx_h, sx_w), (so_n, so_c, so_h, so_w) = g.shape, g.stride(), out.stride()
    (fa_w, fa_h), (fb_w, fb_h) = filter_size(fa), filter_size(fb)
    run_native(f"filtered_lrelu_{kernel}", backend, g.device, "FilteredLreluParams", x=g, b=b, fa=fa, fb=fb,
               out=out, codes=codes if codes.numel() else None, n=n, c=c, h=h, w=w, t_h=t_h, t_w=t_w,
               out_h=out.shape[2], out_w=out.shape[3], sx_n=sx_n, sx_c=sx_c, sx_h=sx_h, sx_w=sx_w,
               so_n=so_n, so_c=so_c, so_h=so_h, so_w=so_w,
               up=up, pad_ax0=pad_a[0], pad_ay0=pad_a[1], fa_h=fa_h, fa_w=fa_w, fa_separable=int(fa.ndim == 1),
               down=down, pad_bx0=pad_b[0], pad_by0=pad_b[1], fb_h=fb_h, fb_w=fb_w,
               fb_separable=int(fb.ndim == 1), gain=gain, slope=slope, clamp=clamp,
               dtype=_native.DTYPE_CODES[g.dtype])


def _codes_for(x: torch.Tensor, t_hw, save: bool, backend: str) -> torch.Tensor:
    # The tiled GPU kernels leave codes no output reads unwritten (their gradient is 0 whatever
    # the code says); zeros keep those bytes defined. The CPU kernel writes every code.
    if not save:
        return torch.empty(x.shape[0], x.shape[1], 0, 0, dtype=torch.uint8, device=x.device)
    alloc = torch.empty if backend == "cpu" else torch.zeros
    return alloc(x.shape[0], x.shape[1], *t_hw, dtype=torch.uint8, device=x.device)


def _forward_shapes(x, fa, fb, up, down, padding):
    out_hw = filtered_lrelu_output_size(x.shape[2:], filter_size(fa), filter_size(fb), up, down, padding)
    return _intermediate_size(x.shape, fa, up, padding), [x.shape[0], x.shape[1], *out_hw]


@torch.library.custom_op("nerfgan_distill::filtered_lrelu", mutates_args=())
def _filtered_lrelu_op(x: torch.Tensor, b: Optional[torch.Tensor], fa: torch.Tensor, fb: torch.Tensor, up: int,
                       down: int, padding: List[int], gain: float, slope: float, clamp: float, save_codes: bool,
                       backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    t_hw, out_shape = _forward_shapes(x, fa, fb, up, down, padding)
    out = empty_output(x, out_shape)
    codes = _codes_for(x, t_hw, save_codes, backend)
    if out.numel():
        _launch("forward", backend, x, b, fa, fb, out, codes, t_hw, up, [padding[0], padding[2]], down, [0, 0],
                gain * up * up, slope, clamp)
    return out, codes


@_filtered_lrelu_op.register_fake
def _(x, b, fa, fb, up, down, padding, gain, slope, clamp, save_codes, backend):
    t_hw, out_shape = _forward_shapes(x, fa, fb, up, down, padding)
    return empty_output(x, out_shape), x.new_empty(x.shape[0], x.shape[1], *(t_hw if save_codes else (0, 0)),
                                                   dtype=torch.uint8)


@torch.library.custom_op("nerfgan_distill::filtered_lrelu_masked", mutates_args=())
def _masked_op(g: torch.Tensor, codes: torch.Tensor, fa: torch.Tensor, fb: torch.Tensor, up: int,
               pad_a: List[int], down: int, pad_b: List[int], out_hw: List[int], gain: float, slope: float,
               backend: str) -> torch.Tensor:
    out = empty_output(g, [g.shape[0], g.shape[1], *out_hw])
    if out.numel():
        _launch("backward", backend, g, None, fa, fb, out, codes, codes.shape[2:], up, pad_a, down, pad_b, gain,
                slope, -1.0)
    return out


@_masked_op.register_fake
def _(g, codes, fa, fb, up, pad_a, down, pad_b, out_hw, gain, slope, backend):
    return empty_output(g, [g.shape[0], g.shape[1], *out_hw])


def _adjoint(g: torch.Tensor, codes: torch.Tensor, fa, fb, up: int, pad_a, down: int, pad_b, in_hw,
             gain: float, slope: float, backend: str) -> torch.Tensor:
    """The adjoint of the masked pass (fa, up, pad_a; fb, down, pad_b) from an [.., in_hw] input,
    applied to g: stage B's adjoint upsamples by `down` with fb flipped, stage A's downsamples by
    `up` with fa flipped; the pointwise step is diagonal, its own adjoint."""
    (fa_w, fa_h), (fb_w, fb_h) = filter_size(fa), filter_size(fb)
    return torch.ops.nerfgan_distill.filtered_lrelu_masked(
        g, codes, _flipped(fb), _flipped(fa), down, [fb_w - 1 - pad_b[0], fb_h - 1 - pad_b[1]],
        up, [fa_w - 1 - pad_a[0], fa_h - 1 - pad_a[1]], list(in_hw), gain, slope, backend)


def _save_forward(ctx, inputs, output):
    x, b, fa, fb, up, down, padding, gain, slope, clamp, save_codes, backend = inputs
    ctx.save_for_backward(fa, fb, output[1])
    ctx.args = (x.shape[2:], up, [padding[0], padding[2]], down, gain * up * up, slope, save_codes, backend,
                b is not None)


def _forward_backward(ctx, dy, dcodes):
    fa, fb, codes = ctx.saved_tensors
    in_hw, up, pad_a, down, gain, slope, saved, backend, has_bias = ctx.args
    if not saved:
        raise RuntimeError("filtered_lrelu: the sign codes were not saved (x and b did not require grad when "
                           "the op ran)")
    dx = _adjoint(dy, codes, fa, fb, up, pad_a, down, [0, 0], in_hw, gain, slope, backend)
    db = dx.sum(dim=[0, 2, 3]) if has_bias and ctx.needs_input_grad[1] else None
    return (dx if ctx.needs_input_grad[0] else None), db, *([None] * 10)


torch.library.register_autograd("nerfgan_distill::filtered_lrelu", _forward_backward, setup_context=_save_forward)


def _save_masked(ctx, inputs, output):
    g, codes, fa, fb, up, pad_a, down, pad_b, out_hw, gain, slope, backend = inputs
    ctx.save_for_backward(codes, fa, fb)
    ctx.args = (g.shape[2:], up, pad_a, down, pad_b, gain, slope, backend)


def _masked_backward(ctx, dout):
    codes, fa, fb = ctx.saved_tensors
    in_hw, up, pad_a, down, pad_b, gain, slope, backend = ctx.args
    dg = _adjoint(dout, codes, fa, fb, up, pad_a, down, pad_b, in_hw, gain, slope, backend)
    return dg, *([None] * 11)


torch.library.register_autograd("nerfgan_distill::filtered_lrelu_masked", _masked_backward, setup_context=_save_masked)
