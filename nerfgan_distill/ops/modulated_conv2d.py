"""modulated_conv2d: StyleGAN2's modulated (and demodulated) convolution, with an optional
fused bias_act epilogue (bias, activation, gain, clamp; applied after the noise, as
StyleGAN2's SynthesisLayer does).

Backends 'triton' and 'cuda' with up == down == 1 run a fused kernel (modulated_conv2d_fused.py:
the styles scale the weight tiles as they are loaded, and demodulation, noise, bias,
activation and clamp run in its epilogue). The CUDA kernel has a CPU twin
(csrc/cpu/modulated_conv2d.cpp) that runs its tile functions; backend 'cpu' uses it where it is
faster than the composite (see _CPU_TWIN_MAX_PIXELS). Every other case is a composite: the
modulation math of modulated_conv2d_ref, the convolution through conv2d_resample (whose FIR
steps run on the chosen backend), then bias_act on the backend for the epilogue arguments;
with fused_modconv=False (training) on a kernel backend the demodulation coefficients come from
s^2 @ (sum_taps W^2)^T with a hand-written backward (_Demodulation), not from per-sample weights;
1x1 convolutions (toRGB) are a batched matmul with per-sample weights (_pointwise).
The fused and composite results are tested against each other.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch

from ..dispatch import resolve
from ._common import check_float_tensor
from .bias_act import activation_args, backend_for, bias_act
from .conv2d_resample import check_factor, check_kernel, conv2d_resample, output_size
from .modulated_conv2d_fused import FusedModConv, fused_forward
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
    N = 0 or O = 0 gives an empty output; I = 0, or padding that leaves no output pixel, raises ValueError.
    up/down/padding/resample_filter/flip_weight are conv2d_resample's.
    bias [O], act, alpha, gain, clamp: an epilogue with bias_act's semantics, applied after the
    noise: y = clamp(act(conv + noise + bias) * gain, -clamp, clamp). As in bias_act, gain=None
    means the activation's default gain (1 for linear, sqrt(2) for lrelu) and clamp=None no
    clamp. With the defaults (no bias, linear, no gain, no clamp) there is no epilogue.
    """
    epilogue, padding, out_shape = _check_arguments(x, weight, styles, noise, up, down, padding, resample_filter,
                                                    demodulate, fused_modconv, bias, act, alpha, gain, clamp)
    name = resolve(backend, x.device)
    if _runs_fused(name, x, weight, noise, up, down, out_shape, flip_weight, fused_modconv):
        return _fused(x, weight, styles, noise, bias, padding, demodulate, flip_weight, fused_modconv, epilogue, name)
    # The epilogue's backend follows bias_act's own 'auto' policy (which activations it leaves to torch).
    return _composite(x, weight, styles, noise, bias, up, down, padding, resample_filter, demodulate,
                      flip_weight, fused_modconv, epilogue, name,
                      epilogue_backend=None if epilogue is None else backend_for(backend, x.device, epilogue[0]))


def _fused(x, weight, styles, noise, bias, padding, demodulate, flip_weight, fused_modconv, epilogue, backend):
    if not _grad_needed(x, weight, styles, noise, bias):  # no autograd node, nothing saved for backward
        return fused_forward(x, weight, styles, noise, bias, padding, demodulate, flip_weight, epilogue, backend)[0]
    return FusedModConv.apply(x, weight, styles, noise, bias,
                              (padding, demodulate, flip_weight, fused_modconv, epilogue, backend))


def _grad_needed(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _check_arguments(x, weight, styles, noise, up, down, padding, resample_filter, demodulate, fused_modconv, bias,
                     act, alpha, gain, clamp):
    """Validates what every path needs (the composite checks the rest); returns the epilogue
    (see _parse_epilogue), the padding as (x0, x1, y0, y1) and the output's shape."""
    op = "modulated_conv2d"
    for name, t in (("x", x), ("weight", weight), ("styles", styles)):
        check_float_tensor(op, name, t)
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"modulated_conv2d: x must be [N, I, H, W] and weight [O, I, kh, kw], got "
                         f"{list(x.shape)} and {list(weight.shape)}")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"modulated_conv2d: weight has {weight.shape[1]} input channels but x has {x.shape[1]}")
    if weight.shape[1] == 0:  # nothing to modulate or demodulate (StyleGAN2 has no such layer)
        raise ValueError(f"modulated_conv2d: weight and x have no input channels (weight {list(weight.shape)}); "
                         "I must be >= 1")
    check_kernel(op, "weight", weight)
    if styles.shape != (x.shape[0], x.shape[1]):
        raise ValueError(f"modulated_conv2d: styles must be [N, I] = {[x.shape[0], x.shape[1]]}, "
                         f"got {list(styles.shape)}")
    for name, t in (("weight", weight), ("styles", styles), ("noise", noise), ("resample_filter", resample_filter),
                    ("bias", bias)):
        if t is not None and t.device != x.device:
            raise ValueError(f"modulated_conv2d: {name} is on {t.device} but x is on {x.device}")
    for name, flag in (("demodulate", demodulate), ("fused_modconv", fused_modconv)):
        if not isinstance(flag, bool):
            raise TypeError(f"modulated_conv2d: {name} must be a bool, got {type(flag).__name__}")
    up, down = check_factor(op, "up", up), check_factor(op, "down", down)
    if resample_filter is not None:
        check_filter(op, resample_filter, x)  # also where unused (up = down = 1)
    padding = parse_padding(op, padding)
    out_shape = (x.shape[0], weight.shape[0], *output_size(op, x, weight, resample_filter, up, down, padding))
    if noise is not None:
        _check_noise(noise, out_shape)
    return _parse_epilogue(op, weight.shape[0], bias, act, alpha, gain, clamp), padding, out_shape


def _check_noise(noise, out_shape) -> None:
    check_float_tensor("modulated_conv2d", "noise", noise)
    try:
        torch.broadcast_shapes(noise.shape, out_shape)
    except RuntimeError:
        raise ValueError(f"modulated_conv2d: noise of shape {list(noise.shape)} does not broadcast with the "
                         f"output's {list(out_shape)}") from None


def _parse_epilogue(op, out_channels, bias, act, alpha, gain, clamp):
    """Validated (act, alpha, gain, clamp or None), or None when there is nothing to apply."""
    alpha, gain, clamp = activation_args(op, act, alpha, gain, clamp)
    if bias is not None:
        check_float_tensor(op, "bias", bias)
        if bias.ndim != 1 or bias.shape[0] != out_channels:
            raise ValueError(f"{op}: bias must have shape [{out_channels}] (one value per output channel), "
                             f"got {list(bias.shape)}")
    if bias is None and act == "linear" and gain == 1 and clamp is None:
        return None
    return act, alpha, gain, clamp


# Backend 'cpu' runs the CUDA kernel's CPU twin only where it beat the composite when timed on
# 2 cores at StyleGAN2's shapes (N = 1 to 4; 512 channels at 8x8 to 32x32, 128 at 128x128, toRGB
# 64->3 at 256x256): for fp16 always (torch has no fast fp16 CPU convolution: the composite was
# 2-50x slower), for the other dtypes only for grouped convolutions (fused_modconv with N > 1)
# on at most 8x8 output pixels, where the composite's per-sample weights and grouped
# convolution were 1.3-3.7x slower (bf16 at N = 2: about even). Elsewhere oneDNN's
# convolutions win, by up to 4x.
_CPU_TWIN_MAX_PIXELS = 64


def _runs_fused(backend, x, weight, noise, up, down, out_shape, flip_weight, fused_modconv) -> bool:
    """Whether a fused kernel runs this call: Triton and CUDA whenever they cover it, the
    CPU twin where it pays (see above)."""
    if backend not in ("triton", "cuda", "cpu"):
        return False
    if not _fusable(x, weight, noise, up, down, out_shape, flip_weight):
        return False
    if backend != "cpu" or x.dtype == torch.float16:
        return True
    return fused_modconv and x.shape[0] > 1 and out_shape[2] * out_shape[3] <= _CPU_TWIN_MAX_PIXELS


def _fusable(x, weight, noise, up, down, out_shape, flip_weight) -> bool:
    """Whether the fused kernels cover this call (on arguments _check_arguments accepted); the
    composite (which also validates flip_weight, and raises its errors) runs otherwise."""
    if up != 1 or down != 1 or not isinstance(flip_weight, bool):
        return False
    if x.numel() == 0 or weight.numel() == 0:  # the composite returns the empty or zero result
        return False
    if noise is not None:
        if torch.broadcast_shapes(noise.shape, out_shape) != out_shape:
            return False  # noise that grows the output: the reference's broadcast
        if torch.result_type(x, noise) != x.dtype:
            return False  # the reference's y + noise promotes; keep its dtype
    return True


def _composite(x, weight, styles, noise, bias, up, down, padding, resample_filter, demodulate, flip_weight,
               fused_modconv, epilogue, backend, epilogue_backend=None):
    # The public conv2d_resample validates up, down, the filter and flip_weight, and runs
    # the reference for backend 'torch'.
    resample = functools.partial(_resample, backend=backend)
    if backend != "torch" and _is_pointwise(x, weight, up, down, padding):
        y = _pointwise(x, weight, styles, noise, demodulate)
    elif fused_modconv or backend == "torch" or x.shape[0] == 0:
        y = modulated_conv2d_ref(x, weight, styles, noise, up, down, padding, resample_filter, demodulate,
                                 flip_weight, fused_modconv, resample=resample)
    else:
        y = _scale_conv_scale(x, weight, styles, noise, up, down, padding, resample_filter, demodulate, flip_weight,
                              resample)
    if epilogue is None:
        return y
    act, alpha, gain, clamp = epilogue
    return bias_act(y, None if bias is None else bias.to(y.dtype), dim=1, act=act, alpha=alpha, gain=gain,
                    clamp=clamp, backend=epilogue_backend or backend)


def _is_pointwise(x, weight, up, down, padding) -> bool:
    return (weight.shape[2] == weight.shape[3] == 1 and up == down == 1 and not any(padding)
            and x.numel() > 0)


def _pointwise(x, weight, styles, noise, demodulate):
    """A 1x1 modulated conv (toRGB) as one batched matmul with the per-sample weights
    [N, O, I], small here: oneDNN's 1x1 convolution with few output channels was 4-5x slower
    forward and backward (128 -> 3 channels at 512x512 on 2 cores), and neither x * s nor its
    backward runs over the large input."""
    n, in_channels = styles.shape
    out_channels = weight.shape[0]
    w = weight.reshape(1, out_channels, in_channels)
    if x.dtype == torch.float16 and demodulate:  # the reference's fp16 pre-normalisation
        w = w * (1 / in_channels ** 0.5 / w.abs().amax(dim=2, keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    w = w * styles.unsqueeze(1)  # [N, O, I]
    if demodulate:
        w = w * (w.square().sum(dim=2, keepdim=True) + 1e-8).rsqrt()
    y = torch.bmm(w.to(x.dtype), x.reshape(n, in_channels, -1)).reshape(n, out_channels, *x.shape[2:])
    return y if noise is None else y + noise.to(y.dtype)


def _scale_conv_scale(x, weight, styles, noise, up, down, padding, resample_filter, demodulate, flip_weight,
                      resample):
    """The reference's non-fused form (scale x by s, convolve with the shared weight, scale by
    d), with d computed as rsqrt(s^2 @ Q^T + 1e-8), Q = sum_taps W^2 ([N, I] @ [I, O]) instead of
    from the per-sample weights [N, O, I, kh, kw] the reference builds: the same sum in another
    order, without that tensor and its backward (most of the layer's time at 4x4 to 32x32 in
    training, where the convolution itself is small)."""
    n, in_channels = styles.shape
    out_channels, _, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:  # the reference's fp16 pre-normalisation
        weight = weight * (1 / (in_channels * kh * kw) ** 0.5 / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    y = x * styles.to(x.dtype).reshape(n, in_channels, 1, 1)
    y = resample(y, weight.to(x.dtype), resample_filter, up, down, padding, 1, flip_weight, False)
    if demodulate:
        dcoefs = _Demodulation.apply(weight, styles)  # [N, O]
        y = y * dcoefs.to(y.dtype).reshape(n, out_channels, 1, 1)
    return y if noise is None else y + noise.to(y.dtype)


def _demodulation(weight, styles):
    q = weight.square().flatten(2).sum(-1)  # [O, I]; taps flattened: one trailing dim reduces faster
    return q, (styles.square() @ q.t() + 1e-8).rsqrt()


class _Demodulation(torch.autograd.Function):
    """d = rsqrt(s^2 @ Q^T + 1e-8), Q = sum_taps W^2, with a hand-written backward: the weight's
    gradient 2 W (t^T s^2), t = -d^3/2 dL/dd, in one pass over W, where autograd's chain takes
    several (square, sum and their backward) over tensors of the weight's size."""

    @staticmethod
    def forward(ctx, weight, styles):
        q, d = _demodulation(weight, styles)
        ctx.save_for_backward(weight, styles, q, d)
        return d

    @staticmethod
    def backward(ctx, dd):
        weight, styles, q, d = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: recompute, so that q and d stay connected to the inputs
            q, d = _demodulation(weight, styles)
        t = dd * d.pow(3) * -0.5  # [N, O]
        dw = weight * (2 * (t.t() @ styles.square())).unsqueeze(-1).unsqueeze(-1) if ctx.needs_input_grad[0] else None
        ds = 2 * styles * (t @ q) if ctx.needs_input_grad[1] else None
        return dw, ds


def _resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter, backend):
    return conv2d_resample(x, w, f, up=up, down=down, padding=list(padding), groups=groups,
                           flip_weight=flip_weight, flip_filter=flip_filter, backend=backend)


def _cpu_twin(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None, demodulate=True,
              flip_weight=True, fused_modconv=True, bias=None, act="linear", alpha=None, gain=None,
              clamp=None) -> torch.Tensor:
    """modulated_conv2d through the CUDA kernel's CPU twin at any size (backend 'cpu' uses it
    only where it pays): the tests run the CUDA kernel's tile math through it without a GPU.
    Autograd works as on the fused path. Raises ValueError for calls the fused kernels do not
    cover (up or down != 1, ...) and for tensors not on the CPU."""
    epilogue, padding, out_shape = _check_arguments(x, weight, styles, noise, up, down, padding, resample_filter,
                                                    demodulate, fused_modconv, bias, act, alpha, gain, clamp)
    if x.device.type != "cpu" or not _fusable(x, weight, noise, up, down, out_shape, flip_weight):
        raise ValueError("modulated_conv2d: the CPU twin runs only calls the fused kernels cover, on CPU tensors")
    return _fused(x, weight, styles, noise, bias, padding, demodulate, flip_weight, fused_modconv, epilogue, "cpu")
