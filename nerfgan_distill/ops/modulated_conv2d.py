"""modulated_conv2d: StyleGAN2's modulated (and demodulated) convolution, with an optional
fused bias_act epilogue (bias, activation, gain, clamp; applied after the noise, as
StyleGAN2's SynthesisLayer does).

Backends 'triton' and 'cuda' with up == down == 1 run a fused kernel (triton_kernels/
modulated_conv2d.py, csrc/cuda/modconv_cuda.cu): the styles scale the weight tiles as they
are loaded, and demodulation, noise, bias, activation and clamp run in its epilogue. Both
take the same host-side preparation (_prepare_fused). The CUDA kernel has a CPU twin
(csrc/cpu/modconv_cpu.cpp) that runs its tile functions; backend 'cpu' uses it where it is
faster than the composite (see _CPU_TWIN_MAX_PIXELS). Every other case is a composite: the
modulation math of modulated_conv2d_ref, the convolution through conv2d_resample (whose FIR
steps run on the chosen backend), then bias_act on the backend for the epilogue arguments.
The fused and composite results are tested against each other.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import torch

from .. import _native
from ..dispatch import resolve
from ._common import (check_finite_number, check_float_tensor, compute_dtype, device_context, empty_output,
                      run_native)
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
    epilogue, padding = _check_arguments(x, weight, styles, noise, padding, resample_filter, demodulate, fused_modconv,
                                         bias, act, alpha, gain, clamp)
    name = resolve(backend, x.device)
    if _runs_fused(name, x, weight, noise, up, down, padding, resample_filter, flip_weight, fused_modconv):
        return _FusedModConv.apply(x, weight, styles, noise, bias,
                                   (padding, demodulate, flip_weight, fused_modconv, epilogue, name))
    return _composite(x, weight, styles, noise, bias, up, down, padding, resample_filter, demodulate,
                      flip_weight, fused_modconv, epilogue, name)


def _check_arguments(x, weight, styles, noise, padding, resample_filter, demodulate, fused_modconv, bias, act, alpha,
                     gain, clamp):
    """Validates what every path needs (the composite checks the rest); returns the epilogue
    (see _parse_epilogue) and the padding as (x0, x1, y0, y1)."""
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
    return epilogue, parse_padding(op, padding)


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


# Backend 'cpu' runs the CUDA kernel's CPU twin only where it beat the composite when timed on
# 2 cores at StyleGAN2's shapes (N = 1 to 4; 512 channels at 8x8 to 32x32, 128 at 128x128, toRGB
# 64->3 at 256x256): for fp16 always (torch has no fast fp16 CPU convolution: the composite was
# 2-50x slower), for the other dtypes only for grouped convolutions (fused_modconv with N > 1)
# on at most 8x8 output pixels, where the composite's per-sample weights and grouped
# convolution were 1.3-3.7x slower (bf16 at N = 2: about even). Elsewhere oneDNN's
# convolutions win, by up to 4x.
_CPU_TWIN_MAX_PIXELS = 64


def _runs_fused(backend, x, weight, noise, up, down, padding, resample_filter, flip_weight, fused_modconv) -> bool:
    """Whether a fused kernel runs this call: Triton and CUDA whenever they cover it, the
    CPU twin where it pays (see above)."""
    if backend not in ("triton", "cuda", "cpu"):
        return False
    if not _fusable(x, weight, noise, up, down, padding, resample_filter, flip_weight):
        return False
    if backend != "cpu" or x.dtype == torch.float16:
        return True
    return fused_modconv and x.shape[0] > 1 and _out_pixels(x, weight, padding) <= _CPU_TWIN_MAX_PIXELS


def _out_pixels(x, weight, padding) -> int:
    """Output pixels of a stride-1 convolution."""
    px0, px1, py0, py1 = padding
    return (x.shape[2] + py0 + py1 - weight.shape[2] + 1) * (x.shape[3] + px0 + px1 - weight.shape[3] + 1)


def _fusable(x, weight, noise, up, down, padding, resample_filter, flip_weight) -> bool:
    """Whether the fused kernels cover this call; the composite (which also validates up,
    down and the rest, and raises its errors) runs otherwise."""
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


class _Prepared(NamedTuple):
    """What every fused kernel takes besides x and out (the contract in triton_kernels/
    modulated_conv2d.py and csrc/include/nerfgan_distill/modconv.h)."""

    w_taps: torch.Tensor  # [kh, kw, O, I] dense, correlation order, compute dtype
    styles: torch.Tensor  # [N, I] dense, compute dtype
    dcoefs: Optional[torch.Tensor]  # [N, O] dense, compute dtype; None without demodulation
    noise: Optional[torch.Tensor]  # expanded to the output's shape, x's dtype
    bias: Optional[torch.Tensor]  # [O] dense, compute dtype
    out_shape: tuple
    pad_x0: int
    pad_y0: int
    act: int  # ACTIVATIONS[act].code
    alpha: float
    gain: float
    clamp: float  # < 0: no clamp


def _prepare_fused(x, weight, styles, noise, bias, padding, demodulate, flip_weight, epilogue) -> _Prepared:
    """The host-side preparation of the small tensors, shared by every fused kernel."""
    comp = compute_dtype(x.dtype)
    n, in_channels = styles.shape
    out_channels, _, kh, kw = weight.shape
    w = weight.detach().to(comp)
    s = styles.detach().to(comp)
    if x.dtype == torch.float16 and demodulate:  # the reference's fp16 pre-normalisation
        w = w * (1 / (in_channels * kh * kw) ** 0.5 / w.abs().amax(dim=[1, 2, 3], keepdim=True))
        s = s / s.abs().amax(dim=1, keepdim=True)
    if not flip_weight:
        w = w.flip([2, 3])
    w_taps = w.permute(2, 3, 0, 1).contiguous()  # [kh, kw, O, I]
    # d[n, o] = rsqrt(sum_{i,kh,kw} (W[o,i] s[n,i])^2 + 1e-8) = rsqrt(s^2 @ (sum_k W^2)^T + 1e-8): [N, O].
    # Summed over w_taps' leading tap dimensions: torch reduces those ~30x faster on the CPU
    # than the trailing kh, kw of the weight.
    d = (s.square() @ w_taps.square().sum(dim=[0, 1]).t() + 1e-8).rsqrt().contiguous() if demodulate else None
    px0, px1, py0, py1 = padding
    out_shape = (n, out_channels, x.shape[2] + py0 + py1 - kh + 1, x.shape[3] + px0 + px1 - kw + 1)
    if noise is not None:
        # _fusable let through only noise whose sum with x keeps x's dtype: a narrower or equal
        # float type, so this cast is exact (and done before the expand, on the small tensor).
        noise = noise.detach().to(x.dtype)
        noise = noise.reshape((1,) * (4 - noise.ndim) + tuple(noise.shape)).expand(out_shape)
    act, alpha, gain, clamp = ("linear", 0.0, 1.0, None) if epilogue is None else epilogue
    b = None if bias is None else bias.detach().to(comp).contiguous()
    return _Prepared(w_taps, s.contiguous(), d, noise, b, out_shape, px0, py0, ACTIVATIONS[act].code, alpha, gain,
                     -1.0 if clamp is None else clamp)


def _fused_forward(x, weight, styles, noise, bias, padding, demodulate, flip_weight, epilogue, backend):
    """The fused kernel of `backend` ('triton', 'cuda' or 'cpu': the CUDA kernel's twin)."""
    prep = _prepare_fused(x, weight, styles, noise, bias, padding, demodulate, flip_weight, epilogue)
    out = empty_output(x, prep.out_shape)
    _launch(backend, x.detach(), prep, out)
    return out


def _launch(backend, x, prep, out) -> None:
    """One fused kernel on prepared tensors: the Triton launch, or the native kernel with raw
    pointers, sizes and strides (and torch's threads on the CPU, its stream on CUDA)."""
    if backend == "triton":
        from ..triton_kernels import modulated_conv2d as kernels

        with device_context(x.device):
            kernels.launch(x, prep.w_taps, prep.styles, prep.dcoefs, prep.noise, prep.bias, out, prep.pad_x0,
                           prep.pad_y0, prep.act, prep.alpha, prep.gain, prep.clamp)
        return
    kh, kw, out_channels, in_channels = prep.w_taps.shape
    optional = [t.data_ptr() if t is not None else 0 for t in (prep.dcoefs, prep.noise, prep.bias)]
    pointers = [x.data_ptr(), prep.w_taps.data_ptr(), prep.styles.data_ptr(), *optional, out.data_ptr()]
    sizes = [x.shape[0], in_channels, out_channels, x.shape[2], x.shape[3], kh, kw, out.shape[2], out.shape[3]]
    noise_strides = list(prep.noise.stride()) if prep.noise is not None else [0, 0, 0, 0]
    run_native("modulated_conv2d_forward", backend, x.device, pointers, sizes, list(x.stride()), noise_strides,
               list(out.stride()), [prep.pad_x0, prep.pad_y0], prep.act, [prep.alpha, prep.gain, prep.clamp],
               _native.DTYPE_CODES[x.dtype])


def _cpu_twin(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None, demodulate=True,
              flip_weight=True, fused_modconv=True, bias=None, act="linear", alpha=None, gain=None,
              clamp=None) -> torch.Tensor:
    """modulated_conv2d through the CUDA kernel's CPU twin at any size (backend 'cpu' uses it
    only where it pays): the tests run the CUDA kernel's tile math through it without a GPU.
    Autograd works as on the fused path. Raises ValueError for calls the fused kernels do not
    cover (up or down != 1, ...) and for tensors not on the CPU."""
    epilogue, padding = _check_arguments(x, weight, styles, noise, padding, resample_filter, demodulate, fused_modconv,
                                         bias, act, alpha, gain, clamp)
    if x.device.type != "cpu" or not _fusable(x, weight, noise, up, down, padding, resample_filter, flip_weight):
        raise ValueError("modulated_conv2d: the CPU twin runs only calls the fused kernels cover, on CPU tensors")
    return _FusedModConv.apply(x, weight, styles, noise, bias,
                               (padding, demodulate, flip_weight, fused_modconv, epilogue, "cpu"))


class _FusedModConv(torch.autograd.Function):
    """Forward: a fused kernel (_fused_forward). Backward: recomputes the forward through the
    differentiable composite path (the same one the other cases use) and takes its
    vector-Jacobian product: correct first, fast later (no backward kernels yet). The
    recomputation uses the saved inputs themselves, so with create_graph the gradients stay
    connected to them and second-order gradients (path-length and R1 penalties) work."""

    @staticmethod
    def forward(ctx, x, weight, styles, noise, bias, params):
        padding, demodulate, flip_weight, fused_modconv, epilogue, backend = params
        ctx.params = params
        ctx.save_for_backward(x, weight, styles, noise, bias)
        return _fused_forward(x, weight, styles, noise, bias, padding, demodulate, flip_weight, epilogue, backend)

    @staticmethod
    def backward(ctx, dy):
        padding, demodulate, flip_weight, fused_modconv, epilogue, backend = ctx.params
        tensors = ctx.saved_tensors
        wanted = [i for i, t in enumerate(tensors) if t is not None and ctx.needs_input_grad[i]]
        grads = [None] * 5
        if not wanted:
            return (*grads, None)
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            y = _composite(*tensors, 1, 1, padding, None, demodulate, flip_weight, fused_modconv, epilogue, backend)
        found = torch.autograd.grad(y, [tensors[i] for i in wanted], dy, create_graph=create_graph,
                                    allow_unused=True)
        for i, g in zip(wanted, found):
            grads[i] = g if g is not None else torch.zeros_like(tensors[i])
        return (*grads, None)
