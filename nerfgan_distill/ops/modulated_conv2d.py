"""modulated_conv2d: StyleGAN2's modulated (and demodulated) convolution, with an optional
fused bias_act epilogue (bias, activation, gain, clamp; applied after the noise, as
StyleGAN2's SynthesisLayer does).

Backend 'triton' with up == down == 1 runs a fused kernel (triton_kernels/modulated_conv2d.py):
the styles scale the weight tiles as they are loaded, and demodulation, noise, bias,
activation and clamp run in its epilogue. Every other case is a composite: the
modulation math of modulated_conv2d_ref, the convolution through conv2d_resample (whose
FIR steps run on the chosen backend), then bias_act on the backend for the epilogue
arguments. The fused and composite results are tested against each other.

The fused op's first-order backward (create_graph=False) runs on kernels too, without
recomputing the convolution. With u = conv(s x, W), v = d u, z = v + noise + bias and
g = dL/dz (bias_act's gradient; dy without an epilogue):
  dx = s * conv_transpose(d g, W) (the forward kernel on g, with the weight transposed and
  flipped and d as its styles), ds = sum_pixels x * conv_transpose(d g, W),
  dW = sum_{n, pixels} (d g) (s x) shifted by each tap (a weight-gradient kernel),
  dnoise, dbias = g summed over their broadcast dimensions, and through the demodulation
  d = rsqrt(s^2 Q^T + 1e-8), Q = sum_taps W^2: dL/dd = sum_pixels g v / d, so with
  t = -d^3/2 dL/dd: dW += 2 W (t^T s^2), ds += 2 s (t Q).
The forward saves v for it when the backward needs it (demodulation, or an activation
or clamp in the epilogue).
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import torch

from ..dispatch import resolve
from ._common import check_finite_number, check_float_tensor, compute_dtype, device_context, empty_output
from .bias_act import bias_act
from .bias_act_ref import ACTIVATIONS
from .conv2d_resample import conv2d_resample
from .modulated_conv2d_ref import modulated_conv2d_ref
from .upfirdn2d import check_filter, parse_padding

__all__ = ["modulated_conv2d"]


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding=0,
                     resample_filter: Optional[torch.Tensor] = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = True, bias: Optional[torch.Tensor] = None,
                     act: str = "linear", alpha: Optional[float] = None, gain: Optional[float] = None,
                     clamp: Optional[float] = None, backend: str = "auto") -> torch.Tensor:
    """x [N, I, H, W], weight [O, I, kh, kw], styles [N, I] -> [N, O, H', W'] (see modulated_conv2d_ref).

    noise, if given, is added to the output (it must broadcast to [N, O, H', W']).
    up/down/padding/resample_filter/flip_weight are conv2d_resample's.
    bias [O], act, alpha, gain, clamp: an epilogue with bias_act's semantics, applied after the
    noise: y = clamp(act(conv + noise + bias) * gain, -clamp, clamp). As in bias_act, gain=None
    means the activation's default gain (1 for linear, sqrt(2) for lrelu) and clamp=None no
    clamp. With the defaults (no bias, linear, no gain, no clamp) there is no epilogue.
    """
    op = "modulated_conv2d"
    for name, t in (("x", x), ("weight", weight), ("styles", styles)):
        check_float_tensor(op, name, t)
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"modulated_conv2d: x must be [N, I, H, W] and weight [O, I, kh, kw], got "
                         f"{list(x.shape)} and {list(weight.shape)}")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"modulated_conv2d: weight has {weight.shape[1]} input channels but x has {x.shape[1]}")
    if styles.shape != (x.shape[0], x.shape[1]):
        raise ValueError(f"modulated_conv2d: styles must be [N, I] = {[x.shape[0], x.shape[1]]}, "
                         f"got {list(styles.shape)}")
    for name, t in (("weight", weight), ("styles", styles), ("noise", noise), ("resample_filter", resample_filter),
                    ("bias", bias)):
        if t is not None and t.device != x.device:
            raise ValueError(f"modulated_conv2d: {name} is on {t.device} but x is on {x.device}")
    if noise is not None:
        check_float_tensor(op, "noise", noise)
    for name, flag in (("demodulate", demodulate), ("fused_modconv", fused_modconv)):
        if not isinstance(flag, bool):
            raise TypeError(f"modulated_conv2d: {name} must be a bool, got {type(flag).__name__}")
    epilogue = _parse_epilogue(op, weight.shape[0], bias, act, alpha, gain, clamp)
    padding = parse_padding(op, padding)
    name = resolve(backend, x.device)
    if name == "triton" and _fusable(x, weight, noise, up, down, padding, resample_filter, flip_weight):
        if not _grad_needed(x, weight, styles, noise, bias):  # no autograd node, nothing saved for backward
            return _fused_forward(x, weight, styles, noise, bias, padding, demodulate, flip_weight, epilogue, name)[0]
        return _FusedModConv.apply(x, weight, styles, noise, bias,
                                   (padding, demodulate, flip_weight, fused_modconv, epilogue, name))
    return _composite(x, weight, styles, noise, bias, up, down, padding, resample_filter, demodulate,
                      flip_weight, fused_modconv, epilogue, name)


def _parse_epilogue(op, out_channels, bias, act, alpha, gain, clamp):
    """Validated (act, alpha, gain, clamp or None), or None when there is nothing to apply."""
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise ValueError(f"{op}: unknown act {act!r}; expected one of {', '.join(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    alpha = spec.default_alpha if alpha is None else check_finite_number(op, "alpha", alpha)
    gain = spec.default_gain if gain is None else check_finite_number(op, "gain", gain)
    clamp = None if clamp is None else check_finite_number(op, "clamp", clamp, minimum=0.0)
    if bias is not None:
        check_float_tensor(op, "bias", bias)
        if bias.ndim != 1 or bias.shape[0] != out_channels:
            raise ValueError(f"{op}: bias must have shape [{out_channels}] (one value per output channel), "
                             f"got {list(bias.shape)}")
    if bias is None and act == "linear" and gain == 1 and clamp is None:
        return None
    return act, alpha, gain, clamp


def _fusable(x, weight, noise, up, down, padding, resample_filter, flip_weight) -> bool:
    """Whether the fused Triton kernel covers this call; the composite (which also validates
    up, down and the rest, and raises its errors) runs otherwise."""
    if type(up) is not int or type(down) is not int or up != 1 or down != 1 or not isinstance(flip_weight, bool):
        return False
    if resample_filter is not None:
        check_filter("modulated_conv2d", resample_filter, x)  # unused at up = down = 1, but still validated
    px0, px1, py0, py1 = padding
    out_h = x.shape[2] + py0 + py1 - weight.shape[2] + 1
    out_w = x.shape[3] + px0 + px1 - weight.shape[3] + 1
    if x.numel() == 0 or weight.numel() == 0 or out_h <= 0 or out_w <= 0:
        return False
    if noise is not None:
        out_shape = (x.shape[0], weight.shape[0], out_h, out_w)
        try:
            if torch.broadcast_shapes(noise.shape, out_shape) != out_shape:
                return False
        except RuntimeError:
            return False  # the composite raises torch's error
        if torch.result_type(x, noise) != x.dtype:
            return False  # the reference's y + noise promotes; keep its dtype
    return True


def _composite(x, weight, styles, noise, bias, up, down, padding, resample_filter, demodulate, flip_weight,
               fused_modconv, epilogue, backend):
    # The public conv2d_resample validates up, down, the filter and flip_weight, and runs
    # the reference for backend 'torch'.
    resample = functools.partial(_resample, backend=backend)
    y = modulated_conv2d_ref(x, weight, styles, noise, up, down, padding, resample_filter, demodulate,
                             flip_weight, fused_modconv, resample=resample)
    if epilogue is None:
        return y
    act, alpha, gain, clamp = epilogue
    return bias_act(y, None if bias is None else bias.to(y.dtype), dim=1, act=act, alpha=alpha, gain=gain,
                    clamp=clamp, backend=backend)


def _resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter, backend):
    return conv2d_resample(x, w, f, up=up, down=down, padding=list(padding), groups=groups,
                           flip_weight=flip_weight, flip_filter=flip_filter, backend=backend)


def _grad_needed(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


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
    # d[n, o] = rsqrt(sum_{i,kh,kw} (W[o,i] s[n,i])^2 + 1e-8) = rsqrt(s^2 @ (sum_k W^2)^T + 1e-8): [N, O]
    d = (s.square() @ w.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt().contiguous() if demodulate else None
    return _Modulation(w, s.contiguous(), d, w_factor, s_factor)


def _launch(backend, kernel, *args, **kwargs):
    """Run one of the fused op's kernel launchers: 'launch' (the convolution with its epilogue,
    also used for dL/dx) or 'launch_weight_grad'. Only 'triton' has them; this is where
    another backend's launchers would plug in."""
    from ..triton_kernels import modulated_conv2d as kernels

    with device_context(args[0].device):
        getattr(kernels, kernel)(*args, **kwargs)


def _fused_forward(x, weight, styles, noise, bias, padding, demodulate, flip_weight, epilogue, backend,
                   keep_v=False):
    """The fused kernel's launch: host-side preparation of the small tensors, then one kernel.
    Returns (out, v): v, the demodulated conv before noise and epilogue, only with keep_v."""
    comp = compute_dtype(x.dtype)
    n = x.shape[0]
    out_channels, _, kh, kw = weight.shape
    mod = _modulation(x, weight, styles, demodulate)
    w = mod.w if flip_weight else mod.w.flip([2, 3])
    w_taps = w.permute(2, 3, 0, 1).contiguous()  # [kh, kw, O, I]
    px0, px1, py0, py1 = padding
    out_shape = (n, out_channels, x.shape[2] + py0 + py1 - kh + 1, x.shape[3] + px0 + px1 - kw + 1)
    out = empty_output(x, out_shape)
    v = empty_output(x, out_shape) if keep_v else None  # the same strides as out, as the kernel wants
    if noise is not None:
        noise = noise.detach()
        noise = noise.reshape((1,) * (4 - noise.ndim) + tuple(noise.shape)).expand(out_shape)
    if epilogue is None:
        act, alpha, gain, clamp = "linear", 0.0, 1.0, None
    else:
        act, alpha, gain, clamp = epilogue
    b = None if bias is None else bias.detach().to(comp).contiguous()
    _launch(backend, "launch", x.detach(), w_taps, mod.s, mod.d, noise, b, out, px0, py0, ACTIVATIONS[act].code,
            alpha, gain, -1.0 if clamp is None else clamp, v=v)
    return out, v


class _FusedModConv(torch.autograd.Function):
    """Forward: the fused Triton kernel. Backward without create_graph: _fused_backward, from
    what the forward saved, without recomputing the convolution. Backward with create_graph
    (path-length and R1 penalties differentiate the gradients again): recomputes the forward
    through the differentiable composite path (the same one the other cases use) and takes
    its vector-Jacobian product; the recomputation uses the saved inputs themselves, so the
    gradients stay connected to them and second-order gradients work."""

    @staticmethod
    def forward(ctx, x, weight, styles, noise, bias, params):
        padding, demodulate, flip_weight, fused_modconv, epilogue, backend = params
        ctx.params = params
        keep_v = _backward_needs_v(ctx.needs_input_grad, demodulate, epilogue)
        out, v = _fused_forward(x, weight, styles, noise, bias, padding, demodulate, flip_weight, epilogue, backend,
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
        if not torch.is_grad_enabled():  # create_graph=False: no graph to build, no recomputation
            return (*_fused_backward(dy, *tensors, v, ctx.params, ctx.needs_input_grad), None)
        with torch.enable_grad():
            y = _composite(*tensors, 1, 1, padding, None, demodulate, flip_weight, fused_modconv, epilogue, backend)
        found = torch.autograd.grad(y, [tensors[i] for i in wanted], dy, create_graph=True, allow_unused=True)
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


def _fused_backward(dy, x, weight, styles, noise, bias, v, params, needs_input_grad):
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
    _launch(backend, "launch", g, w_taps, d, None, None, None, out, kw - 1 - px0, kh - 1 - py0,
            ACTIVATIONS["linear"].code, 0.0, 1.0, -1.0)
    return out


def _weight_grad(g, x, d, s, padding, kernel_size, backend):
    """sum_{n,p} d[n, o] g[n, o, p] s[n, i] x[n, i, p + k - pad]: the gradient of the correlation-order
    weight, [O, I, kh, kw] in the compute dtype."""
    px0, _, py0, _ = padding
    kh, kw = kernel_size
    out = empty_output(d, (kh, kw, g.shape[1], x.shape[1]))  # d: 2-D, so dense, in the compute dtype
    _launch(backend, "launch_weight_grad", g, x.detach(), d, s, out, px0, py0)
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
