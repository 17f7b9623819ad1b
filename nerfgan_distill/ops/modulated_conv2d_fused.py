"""The fused modulated_conv2d path (stride 1: up = down = 1): host-side preparation, the
kernel launches, and the autograd Function with its backward.

Forward kernels: Triton (triton_kernels/modulated_conv2d.py), CUDA (csrc/cuda/modulated_conv2d.cu)
and the CUDA kernel's CPU twin (csrc/cpu/modulated_conv2d.cpp, backend 'cpu'). All take the same
prepared tensors (_Prepared): the styles scale the weight tiles as they are loaded, and the
demodulation, noise, bias, activation and clamp run in the epilogue.

Backward. With create_graph (path-length and R1 penalties differentiate the gradients
again) every backend recomputes the forward through the differentiable composite path and
takes its vector-Jacobian product. Without it, kernels run and the convolution is not
recomputed. With u = conv(s x, W), v = d u, z = v + noise + bias and
g = dL/dz (bias_act's gradient; dy without an epilogue):
  dx = s * conv_transpose(d g, W) (the forward kernel on g, with the weight transposed and
  flipped and d as its styles), ds = sum_pixels x * conv_transpose(d g, W),
  dW = sum_{n, pixels} (d g) (s x) shifted by each tap (a weight-gradient kernel, its
  reduction over samples and pixels split in partial sums for parallelism),
  dnoise, dbias = g summed over their broadcast dimensions, and through the demodulation
  d = rsqrt(s^2 Q^T + 1e-8), Q = sum_taps W^2: dL/dd = sum_pixels g v / d, so with
  t = -d^3/2 dL/dd: dW += 2 W (t^T s^2), ds += 2 s (t Q).
The forward saves v for it when the backward needs it (demodulation, or an activation or
clamp in the epilogue).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .. import _native
from ._common import compute_dtype, device_context, empty_output, run_native
from .bias_act_ref import ACTIVATIONS


class _Modulation(NamedTuple):
    """What the kernels multiply by, in the compute dtype: w [O, I, kh, kw] (as given, not
    flipped), s [N, I], d [N, O] (None without demodulation), and for fp16 with demodulation
    the pre-normalisation factors w = weight * w_factor, s = styles * s_factor (else None)."""
    w: torch.Tensor
    s: torch.Tensor
    d: Optional[torch.Tensor]
    w_factor: Optional[torch.Tensor]
    s_factor: Optional[torch.Tensor]


def _modulation(x, weight, styles, demodulate) -> _Modulation:
    comp = compute_dtype(x.dtype)
    in_channels, kh, kw = weight.shape[1:]
    w = weight.detach().to(comp)
    s = styles.detach().to(comp)
    w_factor = s_factor = None
    if x.dtype == torch.float16 and demodulate:  # the reference's fp16 pre-normalisation
        w_factor = 1 / (in_channels * kh * kw) ** 0.5 / w.abs().amax(dim=[1, 2, 3], keepdim=True)
        s_amax = s.abs().amax(dim=1, keepdim=True)
        w, s, s_factor = w * w_factor, s / s_amax, 1 / s_amax
    # d[n, o] = rsqrt(sum_{i,kh,kw} (W[o,i] s[n,i])^2 + 1e-8) = rsqrt(s^2 @ Q^T + 1e-8), Q = sum_taps W^2.
    # Taps flattened first: torch reduces one trailing dimension faster than two.
    d = (s.square() @ w.square().flatten(2).sum(-1).t() + 1e-8).rsqrt().contiguous() if demodulate else None
    return _Modulation(w, s.contiguous(), d, w_factor, s_factor)


class _Prepared(NamedTuple):
    """What every forward kernel takes besides x and out (the contract in triton_kernels/
    modulated_conv2d.py and csrc/include/nerfgan_distill/modulated_conv2d.h)."""

    w_taps: torch.Tensor  # [kh, kw, O, I] dense, correlation order, compute dtype
    styles: torch.Tensor  # [N, I] dense, compute dtype
    dcoefs: Optional[torch.Tensor]  # [N, O] dense, compute dtype; None: no demodulation
    noise: Optional[torch.Tensor]  # expanded to the output's shape, x's dtype
    bias: Optional[torch.Tensor]  # [O] dense, compute dtype
    out_shape: tuple
    pad_x0: int
    pad_y0: int
    act: int = ACTIVATIONS["linear"].code
    alpha: float = 0.0
    gain: float = 1.0
    clamp: float = -1.0  # < 0: no clamp


def _prepare(x, mod: _Modulation, noise, bias, padding, flip_weight, epilogue) -> _Prepared:
    """The host-side preparation of the small tensors, shared by every forward kernel."""
    w = mod.w if flip_weight else mod.w.flip([2, 3])
    w_taps = w.permute(2, 3, 0, 1).contiguous()  # [kh, kw, O, I]
    kh, kw, out_channels, _ = w_taps.shape
    px0, px1, py0, py1 = padding
    out_shape = (x.shape[0], out_channels, x.shape[2] + py0 + py1 - kh + 1, x.shape[3] + px0 + px1 - kw + 1)
    if noise is not None:
        # The router let through only noise whose sum with x keeps x's dtype: a narrower or equal
        # float type, so this cast is exact (and done before the expand, on the small tensor).
        noise = noise.detach().to(x.dtype)
        noise = noise.reshape((1,) * (4 - noise.ndim) + tuple(noise.shape)).expand(out_shape)
    act, alpha, gain, clamp = ("linear", 0.0, 1.0, None) if epilogue is None else epilogue
    b = None if bias is None else bias.detach().to(mod.s.dtype).contiguous()
    return _Prepared(w_taps, mod.s, mod.d, noise, b, out_shape, px0, py0, ACTIVATIONS[act].code, alpha, gain,
                     -1.0 if clamp is None else clamp)


def _launch_forward(backend, x, prep: _Prepared, out, v=None) -> None:
    """One forward kernel on prepared tensors: the Triton launch, or the native kernel with raw
    pointers, sizes and strides (torch's threads on the CPU, its stream on CUDA). out is in
    x's dtype or the compute dtype. v, if given (out's dtype, shape and strides), receives the
    demodulated conv before the noise and epilogue."""
    if backend == "triton":
        from ..triton_kernels import modulated_conv2d as kernels

        with device_context(x.device):
            kernels.forward(x, prep.w_taps, prep.styles, prep.dcoefs, prep.noise, prep.bias, out, prep.pad_x0,
                           prep.pad_y0, prep.act, prep.alpha, prep.gain, prep.clamp, v=v)
        return
    kh, kw, out_channels, in_channels = prep.w_taps.shape
    sx_n, sx_c, sx_h, sx_w = x.stride()
    sn_n, sn_c, sn_h, sn_w = prep.noise.stride() if prep.noise is not None else (0, 0, 0, 0)
    so_n, so_c, so_h, so_w = out.stride()
    run_native("modulated_conv2d_forward", backend, x.device, "ModulatedConv2dParams", x=x, weight=prep.w_taps,
               s=prep.styles, d=prep.dcoefs, noise=prep.noise, bias=prep.bias, out=out, v=v,
               out_compute=out.dtype != x.dtype, n=x.shape[0], i=in_channels, o=out_channels, h=x.shape[2],
               w=x.shape[3], oh=out.shape[2], ow=out.shape[3], kh=kh, kw=kw,
               sx_n=sx_n, sx_c=sx_c, sx_h=sx_h, sx_w=sx_w, sn_n=sn_n, sn_c=sn_c, sn_h=sn_h, sn_w=sn_w,
               so_n=so_n, so_c=so_c, so_h=so_h, so_w=so_w, pad_x0=prep.pad_x0, pad_y0=prep.pad_y0,
               act=prep.act, alpha=prep.alpha, gain=prep.gain, clamp=prep.clamp, dtype=_native.DTYPE_CODES[x.dtype])


def fused_forward(x, weight, styles, noise, bias, padding, demodulate, flip_weight, epilogue, backend,
                  keep_v=False):
    """(out, v): the fused kernel of `backend` ('triton', 'cuda' or 'cpu': the CUDA kernel's
    twin); v, the demodulated conv before noise and epilogue, only with keep_v."""
    prep = _prepare(x, _modulation(x, weight, styles, demodulate), noise, bias, padding, flip_weight, epilogue)
    out = empty_output(x, prep.out_shape)
    v = empty_output(x, prep.out_shape) if keep_v else None  # the same strides as out, as the kernel wants
    _launch_forward(backend, x.detach(), prep, out, v)
    return out, v


class FusedModConv(torch.autograd.Function):
    """Forward: fused_forward. Backward: see the module docstring (kernels without create_graph,
    else the composite's vector-Jacobian product, computed from the saved inputs themselves
    so the gradients stay connected to them)."""

    @staticmethod
    def forward(ctx, x, weight, styles, noise, bias, params):
        padding, demodulate, flip_weight, fused_modconv, epilogue, backend = params
        ctx.params = params
        keep_v = _backward_needs_v(ctx.needs_input_grad, demodulate, epilogue)
        out, v = fused_forward(x, weight, styles, noise, bias, padding, demodulate, flip_weight, epilogue, backend,
                               keep_v)
        ctx.save_for_backward(x, weight, styles, noise, bias, v)
        return out

    @staticmethod
    def backward(ctx, dy):
        padding, demodulate, flip_weight, fused_modconv, epilogue, backend = ctx.params
        *tensors, v = ctx.saved_tensors
        wanted = [i for i, t in enumerate(tensors) if t is not None and ctx.needs_input_grad[i]]
        grads = [None] * 5
        if not wanted:
            return (*grads, None)
        if not torch.is_grad_enabled():  # create_graph=False: no recomputation
            return (*_kernel_backward(dy, *tensors, v, ctx.params, ctx.needs_input_grad), None)
        from .modulated_conv2d import (
            _composite,  # the public module's composite (same layer)
        )

        with torch.enable_grad():
            y = _composite(*tensors, 1, 1, padding, None, demodulate, flip_weight, fused_modconv, epilogue, backend)
        found = torch.autograd.grad(y, [tensors[i] for i in wanted], dy, create_graph=torch.is_grad_enabled(),
                                    allow_unused=True)
        for i, g in zip(wanted, found):
            grads[i] = g if g is not None else torch.zeros_like(tensors[i])
        return (*grads, None)


def _epilogue_reads_input(epilogue) -> bool:
    """Whether the epilogue's derivative depends on its input (an activation other than
    linear, or a clamp), not only on dy."""
    return epilogue is not None and (epilogue[0] != "linear" or epilogue[3] is not None)


def _backward_needs_v(needs_input_grad, demodulate, epilogue) -> bool:
    need_w, need_s = needs_input_grad[1:3]
    return ((_epilogue_reads_input(epilogue) and any(needs_input_grad[:5]))
            or (demodulate and (need_w or need_s)))


def _kernel_backward(dy, x, weight, styles, noise, bias, v, params, needs_input_grad):
    """First-order gradients of (x, weight, styles, noise, bias) from the saved v, without
    recomputing the convolution (the math is in the module docstring); None where not needed."""
    padding, demodulate, flip_weight, _, epilogue, backend = params
    need_x, need_w, need_s, need_noise, need_bias = needs_input_grad[:5]
    comp = compute_dtype(x.dtype)
    g = _epilogue_grad(dy, v, noise, bias, epilogue, backend).to(x.dtype)  # dL/dz
    mod = _modulation(x, weight, styles, demodulate)
    d = mod.d if demodulate else mod.s.new_ones(x.shape[0], weight.shape[0])
    w = mod.w if flip_weight else mod.w.flip([2, 3])  # the correlation-order weight the kernel saw
    dx = dw = ds = None
    if need_x or need_s:
        dx_unscaled = _input_grad_unscaled(g, w, d, padding, x, backend)
        ds = (dx_unscaled * x.detach()).sum([2, 3]) if need_s else None
        dx = dx_unscaled.mul_(mod.s[:, :, None, None]).to(x.dtype) if need_x else None
    if need_w:
        dw = _weight_grad(g, x, d, mod.s, padding, weight.shape[2:], backend)
        dw = dw if flip_weight else dw.flip([2, 3])
    if demodulate and (need_w or need_s):
        dw, ds = _add_demodulation_grads(g, v, mod, dw, ds)
    if mod.w_factor is not None:  # the output does not depend on the fp16 pre-normalisation's factors
        dw = None if dw is None else dw * mod.w_factor
        ds = None if ds is None else ds * mod.s_factor
    return (dx, None if dw is None else dw.to(weight.dtype), None if ds is None else ds.to(styles.dtype),
            _sum_to_shape(g, noise.shape, noise.dtype) if need_noise else None,
            g.sum([0, 2, 3], dtype=comp).to(bias.dtype) if need_bias else None)


def _epilogue_grad(dy, v, noise, bias, epilogue, backend):
    """dL/dz for the epilogue's input z = v + noise (+ bias inside bias_act)."""
    if not _epilogue_reads_input(epilogue):
        return dy if epilogue is None or epilogue[2] == 1 else dy * epilogue[2]
    act, alpha, gain, clamp = epilogue
    z = v if noise is None else v + noise
    return torch.ops.nerfgan_distill.bias_act_grad(dy, z, None if bias is None else bias.detach().to(z.dtype), 1,
                                                   act, alpha, gain, -1.0 if clamp is None else clamp, backend)


def _input_grad_unscaled(g, w, d, padding, x, backend):
    """sum_{o,k} w[o, i, k] d[n, o] g[n, o, q - k + pad]: the forward kernel run on g with the
    weight transposed and flipped, d as the styles of its input channels, and the padding
    mirrored (its masks cover any padding). [N, I, H, W] in the compute dtype."""
    kh, kw = w.shape[2:]
    px0, _, py0, _ = padding
    w_taps = w.flip([2, 3]).permute(2, 3, 1, 0).contiguous()  # [kh, kw, I, O]
    out = empty_output(x, x.shape, dtype=d.dtype)
    prep = _Prepared(w_taps, d, None, None, None, tuple(x.shape), kw - 1 - px0, kh - 1 - py0)
    _launch_forward(backend, g, prep, out)
    return out


class _ReductionSplits(NamedTuple):
    """How the weight gradient's sum over (sample, pixel) is split: split j covers samples
    [j // pixel_splits * samples_per_split, + samples_per_split) and, of each, the pixels
    [(j % pixel_splits) * pixels_per_split, + pixels_per_split)."""
    samples_per_split: int
    pixel_splits: int
    pixels_per_split: int

    def count(self, samples: int) -> int:
        return -(-samples // self.samples_per_split) * self.pixel_splits


# The weight gradient has few tiles where the channels are few (toRGB, early layers) but many
# pixels to sum: its reduction is split until about this many tiles run at once (GPU; on the
# CPU, a few per thread), into at most _WGRAD_MAX_SPLITS partial sums of [KH, KW, O, I] each,
# added up afterwards (deterministic, no atomics). Tiles are counted as 64 x 64 channels
# (each kernel picks its own) and pixel splits come in blocks of 64.
_WGRAD_GPU_TILES = 1024
_WGRAD_CPU_TILES_PER_THREAD = 4
_WGRAD_MAX_SPLITS = 64
_WGRAD_BLOCK = 64


def _reduction_splits(samples, pixels, out_channels, in_channels, taps, backend) -> _ReductionSplits:
    """Splitting goes over the samples first, then over the pixel blocks of each sample."""
    wanted = _WGRAD_CPU_TILES_PER_THREAD * torch.get_num_threads() if backend == "cpu" else _WGRAD_GPU_TILES
    tiles = -(-out_channels // _WGRAD_BLOCK) * -(-in_channels // _WGRAD_BLOCK) * taps
    pixel_blocks = -(-pixels // _WGRAD_BLOCK)
    splits = max(1, min(samples * pixel_blocks, _WGRAD_MAX_SPLITS, wanted // tiles))
    if splits <= samples:
        return _ReductionSplits(-(-samples // splits), 1, pixels)
    blocks_per_split = -(-pixel_blocks // (splits // samples))
    return _ReductionSplits(1, -(-pixel_blocks // blocks_per_split), blocks_per_split * _WGRAD_BLOCK)


def _weight_grad(g, x, d, s, padding, kernel_size, backend, splits=None):
    """sum_{n,p} d[n, o] g[n, o, p] s[n, i] x[n, i, p + k - pad]: the gradient of the correlation-order
    weight, [O, I, kh, kw] in the compute dtype, from the backend's weight-gradient kernel
    (splits: its reduction's plan, _reduction_splits' by default)."""
    px0, _, py0, _ = padding
    kh, kw = kernel_size
    n, out_channels, oh, ow = g.shape
    in_channels = x.shape[1]
    if splits is None:
        splits = _reduction_splits(n, oh * ow, out_channels, in_channels, kh * kw, backend)
    count = splits.count(n)
    # d: 2-D, so dense, and in the compute dtype.
    partial = empty_output(d, (count, kh, kw, out_channels, in_channels))
    x = x.detach()
    if backend == "triton":
        from ..triton_kernels import modulated_conv2d as kernels

        with device_context(g.device):
            kernels.weight_grad(g, x, d, s, partial, px0, py0, *splits)
    else:
        sg_n, sg_c, sg_h, sg_w = g.stride()
        sx_n, sx_c, sx_h, sx_w = x.stride()
        samples_per_split, pixel_splits, pixels_per_split = splits
        run_native("modulated_conv2d_weight_grad", backend, g.device, "ModulatedConv2dWeightGradParams", g=g, x=x,
                   d=d, s=s, partial=partial, n=n, i=in_channels, o=out_channels, h=x.shape[2], w=x.shape[3],
                   oh=oh, ow=ow, kh=kh, kw=kw, sg_n=sg_n, sg_c=sg_c, sg_h=sg_h, sg_w=sg_w,
                   sx_n=sx_n, sx_c=sx_c, sx_h=sx_h, sx_w=sx_w, pad_x0=px0, pad_y0=py0,
                   samples_per_split=samples_per_split, pixel_splits=pixel_splits,
                   pixels_per_split=pixels_per_split, dtype=_native.DTYPE_CODES[x.dtype])
    out = partial[0] if count == 1 else partial.sum(0)
    return out.permute(2, 3, 0, 1)


def _add_demodulation_grads(g, v, mod, dw, ds):
    """dw, ds plus the gradients through d = rsqrt(s^2 Q^T + 1e-8), Q = sum_taps w^2.
    dL/dd = sum_p g u = sum_p g v / d, and t = dL/d(s^2 Q^T) = -d^3 / 2 dL/dd."""
    comp = mod.d.dtype
    t = (g.to(comp) * v.to(comp)).sum([2, 3]) * mod.d.square() * -0.5  # [N, O]
    if dw is not None:
        dw = dw + 2 * mod.w * (t.t() @ mod.s.square())[:, :, None, None]
    if ds is not None:
        ds = ds + 2 * mod.s * (t @ mod.w.square().sum([2, 3]))
    return dw, ds


def _sum_to_shape(g, shape, dtype):
    """g summed over the dimensions a tensor of `shape` was broadcast along, accumulated in fp32 (fp64)."""
    lead = g.ndim - len(shape)
    dims = [*range(lead), *(lead + i for i, size in enumerate(shape) if size == 1 and g.shape[lead + i] != 1)]
    if not dims:
        return g.to(dtype, copy=True)
    return g.sum(dims, keepdim=True, dtype=compute_dtype(g.dtype)).reshape(shape).to(dtype)
