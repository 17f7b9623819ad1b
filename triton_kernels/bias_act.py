"""bias_act in Triton: one elementwise kernel for forward, grad and grad2.

Same contract as csrc/include/nerfgan_distill/bias_act.h: tensors are dense in
any dimension order, the bias index of the element at offset o is
(o // bias_stride) % bias_size, compute is fp32 (fp64 for fp64 tensors).
"""
from __future__ import annotations

import triton
import triton.language as tl

from ..kernel_codes import ACT, BIAS_ACT_MODE
from ._common import to_compute

# Activation and mode codes (kernel_codes, as the C++ enums), constexpr so kernels can branch on them.
_RELU: tl.constexpr = tl.constexpr(ACT["relu"])
_LRELU: tl.constexpr = tl.constexpr(ACT["lrelu"])
_TANH: tl.constexpr = tl.constexpr(ACT["tanh"])
_SIGMOID: tl.constexpr = tl.constexpr(ACT["sigmoid"])
_ELU: tl.constexpr = tl.constexpr(ACT["elu"])
_SELU: tl.constexpr = tl.constexpr(ACT["selu"])
_SOFTPLUS: tl.constexpr = tl.constexpr(ACT["softplus"])
_SWISH: tl.constexpr = tl.constexpr(ACT["swish"])
_FORWARD: tl.constexpr = tl.constexpr(BIAS_ACT_MODE["forward"])
_GRAD: tl.constexpr = tl.constexpr(BIAS_ACT_MODE["grad"])

_SELU_SCALE: tl.constexpr = tl.constexpr(1.0507009873554804934193349852946)
_SELU_NEG: tl.constexpr = tl.constexpr(1.0507009873554804934193349852946 * 1.6732632423543772848170429916717)


@triton.jit
def _log1p(z):
    """log(1 + z) for z >= 0 without losing small z: the rounding of u = 1 + z cancels (Goldberg)."""
    u = 1 + z
    denominator = tl.where(u == 1, u, u - 1)  # that branch is not taken; no 0 / 0 in it
    return tl.where(u == 1, z, tl.log(u) * z / denominator)


@triton.jit
def _expm1(u, s):
    """exp(s) - 1 for s <= 0 given u = exp(s), without cancelling near 0 (Kahan)."""
    um1 = u - 1
    safe = tl.where(u == 1, u * 0.5, u)  # that branch is not taken; no 0 / 0 in it
    return tl.where(u == 1, s, tl.where(um1 == -1, um1, um1 * s / tl.log(safe)))


@triton.jit
def _activation(s, alpha, ACT: tl.constexpr):
    """f(s), f'(s), f''(s) for one activation."""
    zero = tl.zeros_like(s)  # not s * 0: that is NaN for infinite s
    one = zero + 1
    # Selects keep NaN as torch does; tl.minimum would not.
    if ACT == _RELU:  # relu
        f = tl.where(s <= 0, zero, s)
        d1 = tl.where(s <= 0, zero, one)
        d2 = zero
    elif ACT == _LRELU:  # lrelu
        f = tl.where(s > 0, s, s * alpha)
        d1 = tl.where(s > 0, one, one * alpha)
        d2 = zero
    elif ACT == _TANH:  # tanh(|s|) = -m / (2 + m), m = expm1(-2|s|): no overflow, no cancellation near 0
        a2 = -2 * tl.abs(s)
        e = tl.exp(a2)
        m = _expm1(e, a2)
        t = -m / (2 + m)
        f = tl.where(s < 0, -t, t)
        d1 = 4 * e / ((1 + e) * (1 + e))  # 1 - f^2 without cancelling where f is near +-1
        d2 = -2 * f * d1
    elif ACT == _SIGMOID:  # sigmoid
        f = 1 / (1 + tl.exp(-s))
        d1 = f * (1 - f)
        d2 = d1 * (1 - 2 * f)
    elif ACT == _ELU:  # elu; torch tests s <= 0, so NaN takes the positive branch
        e = tl.exp(tl.where(s <= 0, s, zero))
        f = tl.where(s <= 0, _expm1(e, s), s)
        d1 = tl.where(s <= 0, e, one)
        d2 = tl.where(s <= 0, e, zero)
    elif ACT == _SELU:  # selu
        sn = tl.where(s <= 0, s, zero)
        e = tl.exp(sn)
        f = tl.where(s <= 0, _expm1(e, sn) * _SELU_NEG, s * _SELU_SCALE)
        d1 = tl.where(s <= 0, e * _SELU_NEG, one * _SELU_SCALE)
        d2 = tl.where(s <= 0, e * _SELU_NEG, zero)
    elif ACT == _SOFTPLUS:  # softplus (beta 1, threshold 20, as torch)
        z = tl.exp(tl.where(s > 20, zero + 20, s))
        f = tl.where(s > 20, s, _log1p(z))
        sig = z / (z + 1)
        d1 = tl.where(s > 20, one, sig)
        d2 = tl.where(s > 20, zero, sig / (z + 1))
    elif ACT == _SWISH:  # swish
        sig = 1 / (1 + tl.exp(-s))
        f = s * sig
        d1 = sig * (1 + s * (1 - sig))
        d2 = sig * (1 - sig) * (2 + s * (1 - 2 * sig))
    else:  # linear
        f = s
        d1 = one
        d2 = zero
    return f, d1, d2


@triton.jit
def bias_act_forward_kernel(x_ptr, b_ptr, g_ptr, h_ptr, out_ptr, numel, bias_stride, bias_size,
                    alpha, gain, clamp,
                    ACT: tl.constexpr, MODE: tl.constexpr, HAS_BIAS: tl.constexpr,
                    HAS_CLAMP: tl.constexpr, FP64: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < numel
    s = to_compute(tl.load(x_ptr + offs, mask=inside, other=0), FP64)
    if HAS_BIAS:
        s += to_compute(tl.load(b_ptr + (offs // bias_stride) % bias_size, mask=inside, other=0), FP64)
    f, d1, d2 = _activation(s, alpha, ACT)
    y = f * gain
    if MODE == _FORWARD:
        out = y
        if HAS_CLAMP:
            out = tl.where(y < -clamp, -clamp, tl.where(y > clamp, clamp, y))  # NaN passes
    else:
        g = to_compute(tl.load(g_ptr + offs, mask=inside, other=0), FP64)
        if MODE == _GRAD:
            out = g * gain * d1
        else:
            h = to_compute(tl.load(h_ptr + offs, mask=inside, other=0), FP64)
            out = g * h * gain * d2
        if HAS_CLAMP:
            out = tl.where((y >= -clamp) & (y <= clamp), out, 0.0)  # exactly 0, even for NaN
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=inside)


INTERPRETED = type(bias_act_forward_kernel).__name__ == "InterpretedFunction"
_BLOCK = 1024


def forward(x, b, g, h, out, bias_stride, bias_size, act, mode, alpha, gain, clamp):
    """Run the kernel on tensors already laid out by the caller (dense, same strides)."""
    numel = x.numel()
    if numel == 0:
        return
    grid = (triton.cdiv(numel, _BLOCK),)
    bias_act_forward_kernel[grid](
        x, b if b is not None else x, g if g is not None else x, h if h is not None else x, out,
        numel, bias_stride, bias_size, float(alpha), float(gain), float(clamp),
        ACT=act, MODE=mode, HAS_BIAS=b is not None, HAS_CLAMP=clamp >= 0,
        FP64=x.element_size() == 8, BLOCK=_BLOCK)
