"""bias_act: fused bias + activation + gain + clamp (StyleGAN2-ADA semantics).

    y = clamp(act(x + b) * gain, -clamp, clamp),  b broadcast along `dim`

The cuda, cpu and triton backends run as torch custom ops: ``bias_act`` for the
forward, ``bias_act_grad`` for dL/dx and ``bias_act_grad2`` for the derivative of
bias_act_grad. Because each backward is itself a custom op with registered
autograd, gradients of second order work (the R1 penalty of a discriminator
differentiates through bias_act twice); a third order raises. The `torch`
backend runs the reference in bias_act_ref.py with plain autograd.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch

from .. import _native
from ..dispatch import resolve
from ..kernel_codes import BIAS_ACT_MODE
from ._common import (check_finite_number, check_float_tensor, check_same_device_dtype, device_context, empty_output,
                      in_layout, normalize_dim, refuse_gradient, run_native)
from .bias_act_ref import ACTIVATIONS, bias_act_ref

__all__ = ["bias_act", "ACTIVATIONS"]

FORWARD, GRAD, GRAD2 = (BIAS_ACT_MODE[m] for m in ("forward", "grad", "grad2"))  # the kernels' modes

# Our CPU kernel is AVX2 code. Where torch's own CPU kernels are AVX-512 code, its vectorised
# exp/tanh (Sleef) and a backward from the saved output beat ours for these activations (a Xeon:
# 0.83-0.94x of eager torch forward but sigmoid's 2.6x, 0.77-0.84x forward+backward at
# [8, 256, 64, 64], benchmarks/results/bias_act-cpu-intel-*-20261207-*.json; that file predates the
# benchmark's torch_cpu_capability field, AVX-512 is inferred from the server Xeon), so 'auto'
# leaves them to torch there. Where torch runs AVX2 code too, ours are 1.2-2.9x forward and 0.85-1.4x
# forward+backward (an AMD EPYC, two runs: bias_act-cpu-amd-epyc-20261207-*.json), so 'auto' keeps
# them. linear, relu, lrelu and swish stay on the kernel everywhere (2.0-3.8x).
TORCH_FASTER_WITH_AVX512 = frozenset({"tanh", "sigmoid", "elu", "selu", "softplus"})


@functools.lru_cache(maxsize=None)
def _torch_cpu_runs_avx512() -> bool:
    return "AVX512" in torch.backends.cpu.get_cpu_capability()


# Constant for torch.compile, as dispatch.resolve (the capability query would not trace).
@torch.compiler.assume_constant_result
def backend_for(backend: str, device: torch.device, act: str) -> str:
    """The backend that runs bias_act with activation `act` on `device` for the requested
    `backend` (dispatch.resolve, with the CPU policy above for 'auto'); also used by the ops
    that take bias_act as an epilogue."""
    slower = act in TORCH_FASTER_WITH_AVX512 and device.type == "cpu" and _torch_cpu_runs_avx512()
    return resolve(backend, device, cpu_kernel_slower=slower)


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = "linear",
             alpha: Optional[float] = None, gain: Optional[float] = None,
             clamp: Optional[float] = None, backend: str = "auto") -> torch.Tensor:
    """Add bias `b` along `dim`, apply `act`, scale by `gain`, clamp to [-clamp, clamp].

    Args:
        x: float tensor of any shape with at least one dimension.
        b: optional 1-D bias with x.shape[dim] entries, same device and dtype as x.
        dim: the dimension of x the bias runs along (negative values count from the end).
        act: linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus or swish.
        alpha: the lrelu slope (default 0.2); other activations ignore it.
        gain: output scale; default per activation (sqrt(2) for relu, lrelu, swish, else 1).
        clamp: clamp the output to [-clamp, clamp] after the gain; None for no clamp.
        backend: 'auto', 'cuda', 'triton', 'cpu' or 'torch' (see nerfgan_distill.backends).
    """
    op = "bias_act"
    check_float_tensor(op, "x", x)
    if x.ndim == 0:
        raise ValueError("bias_act: x must have at least one dimension, got a 0-d tensor")
    dim = normalize_dim(op, dim, x.ndim)
    alpha, gain, clamp = activation_args(op, act, alpha, gain, clamp)
    clamp_value = -1.0 if clamp is None else clamp
    if b is not None:
        check_float_tensor(op, "b", b)
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias_act: b must have shape [{x.shape[dim]}] to match x.shape[{dim}] "
                             f"(x is {list(x.shape)}), got {list(b.shape)}")
        check_same_device_dtype(op, "b", b, "x", x)
    name = backend_for(backend, x.device, act)
    if name == "torch":
        return bias_act_ref(x, b, dim, act, alpha, gain, clamp)
    return torch.ops.nerfgan_distill.bias_act(x, b, dim, act, alpha, gain, clamp_value, name)


def activation_args(op: str, act, alpha, gain, clamp) -> tuple[float, float, Optional[float]]:
    """Validated (alpha, gain, clamp) for activation `act`, defaults filled in (clamp None: none);
    errors name `op`. Shared with the ops that take bias_act as an epilogue."""
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise ValueError(f"{op}: unknown act {act!r}; expected one of {', '.join(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    alpha = spec.default_alpha if alpha is None else check_finite_number(op, "alpha", alpha)
    gain = spec.default_gain if gain is None else check_finite_number(op, "gain", gain)
    clamp = None if clamp is None else check_finite_number(op, "clamp", clamp, minimum=0.0)
    return alpha, gain, clamp


def _run(mode: int, x, b, g, h, dim, act, alpha, gain, clamp, backend) -> torch.Tensor:
    """Launch one backend's kernel. Inputs are validated; layouts are fixed up here."""
    out = empty_output(x)
    if out.numel() == 0:
        return out
    x = in_layout(x, out)
    g = None if g is None else in_layout(g.to(x.dtype), out)
    h = None if h is None else in_layout(h.to(x.dtype), out)
    if b is not None:
        b = b.contiguous()
        bias_size = x.shape[dim]
        bias_stride = out.stride(dim) if bias_size > 1 else 1
    else:
        bias_size = bias_stride = 1
    code = ACTIVATIONS[act].code
    if backend == "triton":
        from ..triton_kernels import bias_act as kernels

        with device_context(x.device):
            kernels.forward(x, b, g, h, out, bias_stride, bias_size, code, mode, alpha, gain, clamp)
        return out
    run_native("bias_act_forward", backend, x.device, "BiasActParams", x=x, b=b, g=g, h=h, out=out,
               numel=out.numel(), bias_stride=bias_stride, bias_size=bias_size, act=code, mode=mode,
               dtype=_native.DTYPE_CODES[x.dtype], alpha=alpha, gain=gain, clamp=clamp)
    return out


def _sum_to_bias(grad: torch.Tensor, dim: int) -> torch.Tensor:
    others = [i for i in range(grad.ndim) if i != dim]
    return grad.sum(others) if others else grad.clone()  # sum([]) would reduce everything


# --- custom ops -----------------------------------------------------------------------------

@torch.library.custom_op("nerfgan_distill::bias_act", mutates_args=())
def _bias_act_op(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float,
                 gain: float, clamp: float, backend: str) -> torch.Tensor:
    return _run(FORWARD, x, b, None, None, dim, act, alpha, gain, clamp, backend)


@torch.library.custom_op("nerfgan_distill::bias_act_grad", mutates_args=())
def _bias_act_grad_op(g: torch.Tensor, x: torch.Tensor, b: Optional[torch.Tensor], dim: int,
                      act: str, alpha: float, gain: float, clamp: float,
                      backend: str) -> torch.Tensor:
    return _run(GRAD, x, b, g, None, dim, act, alpha, gain, clamp, backend)


@torch.library.custom_op("nerfgan_distill::bias_act_grad2", mutates_args=())
def _bias_act_grad2_op(g: torch.Tensor, h: torch.Tensor, x: torch.Tensor, b: Optional[torch.Tensor],
                       dim: int, act: str, alpha: float, gain: float, clamp: float,
                       backend: str) -> torch.Tensor:
    return _run(GRAD2, x, b, g, h, dim, act, alpha, gain, clamp, backend)


@_bias_act_op.register_fake
def _(x, b, dim, act, alpha, gain, clamp, backend):
    return empty_output(x)


@_bias_act_grad_op.register_fake
def _(g, x, b, dim, act, alpha, gain, clamp, backend):
    return empty_output(x)


@_bias_act_grad2_op.register_fake
def _(g, h, x, b, dim, act, alpha, gain, clamp, backend):
    return empty_output(x)


def _save_forward(ctx, inputs, output):
    x, b, *params = inputs
    ctx.save_for_backward(x, b)
    ctx.params = tuple(params)  # dim, act, alpha, gain, clamp, backend


def _backward_forward(ctx, dy):
    x, b = ctx.saved_tensors
    dx = db = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
        grad = torch.ops.nerfgan_distill.bias_act_grad(dy, x, b, *ctx.params)
        dx = grad if ctx.needs_input_grad[0] else None
        if b is not None and ctx.needs_input_grad[1]:
            db = _sum_to_bias(grad, ctx.params[0])
    return dx, db, None, None, None, None, None, None


def _save_grad(ctx, inputs, output):
    g, x, b, *params = inputs
    ctx.save_for_backward(g, x, b)
    ctx.params = tuple(params)


def _backward_grad(ctx, gg):
    # bias_act_grad is linear in g, and its derivative in x (and b) is g * gain * f''(x + b).
    g, x, b = ctx.saved_tensors
    dim, act = ctx.params[0], ctx.params[1]
    d_g = d_x = d_b = None
    if ctx.needs_input_grad[0]:
        d_g = torch.ops.nerfgan_distill.bias_act_grad(gg, x, b, *ctx.params)
    if ACTIVATIONS[act].has_2nd_grad and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
        d_s = torch.ops.nerfgan_distill.bias_act_grad2(gg, g, x, b, *ctx.params)
        d_x = d_s if ctx.needs_input_grad[1] else None
        if b is not None and ctx.needs_input_grad[2]:
            d_b = _sum_to_bias(d_s, dim)
    return d_g, d_x, d_b, None, None, None, None, None, None


torch.library.register_autograd("nerfgan_distill::bias_act", _backward_forward, setup_context=_save_forward)
torch.library.register_autograd("nerfgan_distill::bias_act_grad", _backward_grad, setup_context=_save_grad)
refuse_gradient("nerfgan_distill::bias_act_grad2", "bias_act", "third")
