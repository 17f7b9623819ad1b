"""modulated_conv2d forward in Triton (stride 1: up = down = 1), as an implicit GEMM.

One program computes an output tile of BLOCK_O output channels x BLOCK_P pixels of one
sample n. It loops over the input channels in blocks of BLOCK_I and, for each block, over
the KH x KW taps (unrolled): the [BLOCK_I, BLOCK_P] tile of x under that tap is gathered
with masks standing in for the zero padding, the [BLOCK_O, BLOCK_I] tile of the shared
weight is scaled by the styles s[n, i] (the per-sample [N, O, I, kh, kw] weight never
exists in memory) and the two are multiplied into the accumulator.

Epilogue, on the fp32 (fp64) accumulator: * d[n, o] (demodulation, precomputed by the
launcher), + noise (any broadcast, given by strides), + bias[o], activation, * gain,
clamp; stored once in the output's dtype and layout. Optionally it also stores v, the
demodulated convolution before noise and epilogue, for the backward pass.

The same kernel computes dL/dx (up to the styles) on dL/dconv with the transposed,
flipped weight; modulated_conv2d_weight_grad_kernel computes dL/dweight (see weight_grad).

Contract (the launcher's caller prepares it):
- x [N, I, H, W] and out [N, O, OH, OW] in any strides (v, if stored, in out's strides);
  noise expanded to out's shape (zero strides where it broadcasts), any float dtype;
- w [KH, KW, O, I] dense, correlation order (flip_weight=False already flipped), in the
  compute dtype, fp16 pre-normalisation already applied; s [N, I] and d [N, O] dense
  in the compute dtype; bias [O] dense in the compute dtype.
- Compute is fp32 (fp64 for fp64 x). USE_DOT multiplies the tiles with tl.dot: in x's
  dtype for fp16/bf16 (the modulated weight tile is rounded to it, as the fused
  reference rounds its per-sample weights), in IEEE fp32 for fp32. FP64 uses a
  broadcast multiply-and-sum instead.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import to_compute
from .bias_act import _activation


@triton.jit
def modulated_conv2d_forward_kernel(x_ptr, w_ptr, s_ptr, d_ptr, noise_ptr, b_ptr, out_ptr, v_ptr,
                       I, O, H, W, OW, P,
                       sxn, sxc, sxh, sxw, snn, snc, snh, snw, son, soc, soh, sow,
                       pad_x0, pad_y0, alpha, gain, clamp,
                       KH: tl.constexpr, KW: tl.constexpr, DEMOD: tl.constexpr, HAS_NOISE: tl.constexpr,
                       HAS_BIAS: tl.constexpr, ACT: tl.constexpr, HAS_CLAMP: tl.constexpr, STORE_V: tl.constexpr,
                       USE_DOT: tl.constexpr, LOWP_DOT: tl.constexpr, FP64: tl.constexpr,
                       BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_P: tl.constexpr):
    pid_p = tl.program_id(0)
    pid_o = tl.program_id(1)
    n = tl.program_id(2).to(tl.int64)

    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = p < P
    oy = p // OW
    ox = p % OW
    co = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
    o_ok = co < O

    acc = to_compute(tl.zeros([BLOCK_O, BLOCK_P], dtype=tl.float32), FP64)
    x_base = x_ptr + n * sxn
    for i0 in range(0, I, BLOCK_I):
        ci = i0 + tl.arange(0, BLOCK_I)
        i_ok = ci < I
        style = tl.load(s_ptr + n * I + ci, mask=i_ok, other=0)
        x_chan = ci.to(tl.int64)[:, None] * sxc
        w_mask = o_ok[:, None] & i_ok[None, :]
        for ky in tl.static_range(KH):
            iy = oy + (ky - pad_y0)
            y_ok = p_ok & (iy >= 0) & (iy < H)
            for kx in tl.static_range(KW):
                ix = ox + (kx - pad_x0)
                pix_ok = y_ok & (ix >= 0) & (ix < W)
                pix = iy.to(tl.int64) * sxh + ix.to(tl.int64) * sxw
                xt = tl.load(x_base + x_chan + pix[None, :], mask=i_ok[:, None] & pix_ok[None, :], other=0)
                wt = tl.load(w_ptr + ((ky * KW + kx) * O + co[:, None]) * I + ci[None, :], mask=w_mask, other=0)
                wt = wt * style[None, :]  # modulation, folded into the weight tile
                if USE_DOT:
                    if LOWP_DOT:
                        acc = tl.dot(wt.to(xt.dtype), xt, acc)
                    else:
                        acc = tl.dot(wt, xt.to(tl.float32), acc, input_precision="ieee")
                else:
                    acc += tl.sum(wt[:, :, None] * to_compute(xt, FP64)[None, :, :], axis=1)

    # Epilogue: demodulation, noise, bias, activation, gain, clamp.
    if DEMOD:
        acc = acc * tl.load(d_ptr + n * O + co, mask=o_ok, other=0)[:, None]
    out_ok = o_ok[:, None] & p_ok[None, :]
    oy64 = oy.to(tl.int64)
    ox64 = ox.to(tl.int64)
    co64 = co.to(tl.int64)
    out_offs = n * son + co64[:, None] * soc + (oy64 * soh + ox64 * sow)[None, :]
    if STORE_V:
        tl.store(v_ptr + out_offs, acc.to(v_ptr.dtype.element_ty), mask=out_ok)
    if HAS_NOISE:
        noise = tl.load(noise_ptr + n * snn + co64[:, None] * snc + (oy64 * snh + ox64 * snw)[None, :],
                        mask=out_ok, other=0)
        acc += to_compute(noise, FP64)
    if HAS_BIAS:
        acc += tl.load(b_ptr + co, mask=o_ok, other=0)[:, None]
    f, d1, d2 = _activation(acc, alpha, ACT)
    y = f * gain
    if HAS_CLAMP:
        y = tl.where(y < -clamp, -clamp, tl.where(y > clamp, clamp, y))  # NaN passes, as in bias_act
    tl.store(out_ptr + out_offs, y.to(out_ptr.dtype.element_ty), mask=out_ok)


INTERPRETED = type(modulated_conv2d_forward_kernel).__name__ == "InterpretedFunction"


def _pow2(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(v, 1))))


def _dot_mode(dtype) -> tuple[bool, bool]:
    """(fp64: broadcast products instead of tl.dot, lowp: tl.dot in the 16-bit dtype)."""
    lowp = dtype.itemsize == 2
    if INTERPRETED and dtype == torch.bfloat16:
        lowp = False  # the interpreter's tl.dot gets bf16 operands wrong (triton 3.9): multiply in fp32
    return dtype.itemsize == 8, lowp


def forward(x, w, s, d, noise, bias, out, pad_x0, pad_y0, act, alpha, gain, clamp, v=None):
    """Run the kernel on prepared tensors (see the module docstring); clamp < 0 means none.
    v, if given (out's shape and strides), receives the demodulated conv before noise/epilogue."""
    n, in_channels, h, wd = x.shape
    _, out_channels, oh, ow = out.shape
    kh, kw = w.shape[0], w.shape[1]
    pixels = oh * ow
    if out.numel() == 0:
        return
    fp64, lowp = _dot_mode(x.dtype)
    # tl.dot needs tiles of at least 16 in every dimension.
    block_o = _pow2(out_channels, 16, 64)
    block_i = _pow2(in_channels, 16, 32)
    block_p = _pow2(pixels, 16, 64)
    if fp64:  # the broadcast product is BLOCK_O * BLOCK_I * BLOCK_P values: keep it small
        block_o, block_i, block_p = _pow2(out_channels, 1, 16), _pow2(in_channels, 1, 8), _pow2(pixels, 1, 32)
    grid = (triton.cdiv(pixels, block_p), triton.cdiv(out_channels, block_o), n)
    noise_strides = noise.stride() if noise is not None else (0, 0, 0, 0)
    modulated_conv2d_forward_kernel[grid](
        x, w, s, d if d is not None else s, noise if noise is not None else x, bias if bias is not None else s, out,
        v if v is not None else out,
        in_channels, out_channels, h, wd, ow, pixels,
        *x.stride(), *noise_strides, *out.stride(),
        pad_x0, pad_y0, float(alpha), float(gain), float(clamp),
        KH=kh, KW=kw, DEMOD=d is not None, HAS_NOISE=noise is not None, HAS_BIAS=bias is not None,
        ACT=act, HAS_CLAMP=clamp >= 0, STORE_V=v is not None, USE_DOT=not fp64, LOWP_DOT=lowp, FP64=fp64,
        BLOCK_O=block_o, BLOCK_I=block_i, BLOCK_P=block_p)


@triton.jit
def modulated_conv2d_weight_grad_kernel(g_ptr, x_ptr, d_ptr, s_ptr, ws_ptr,
                         N, I, O, H, W, OW, P, samples_per_split, pixel_splits, pixels_per_split,
                         sgn, sgc, sgh, sgw, sxn, sxc, sxh, sxw,
                         pad_x0, pad_y0,
                         KH: tl.constexpr, KW: tl.constexpr,
                         USE_DOT: tl.constexpr, LOWP_DOT: tl.constexpr, FP64: tl.constexpr,
                         BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_P: tl.constexpr):
    # One program: a [BLOCK_O, BLOCK_I] tile of one tap, summed over one split of the
    # (sample, pixel) reduction; the caller adds up the splits.
    pid_oi = tl.program_id(0)
    tap = tl.program_id(1)
    split = tl.program_id(2)
    i_blocks = tl.cdiv(I, BLOCK_I)
    co = (pid_oi // i_blocks) * BLOCK_O + tl.arange(0, BLOCK_O)
    ci = (pid_oi % i_blocks) * BLOCK_I + tl.arange(0, BLOCK_I)
    o_ok = co < O
    i_ok = ci < I
    ky = tap // KW
    kx = tap % KW
    n_lo = ((split // pixel_splits) * samples_per_split).to(tl.int64)  # so is the loop's n: 64-bit offsets
    n_hi = tl.minimum(N, n_lo + samples_per_split)
    p_lo = (split % pixel_splits) * pixels_per_split
    p_hi = tl.minimum(P, p_lo + pixels_per_split)
    g_chan = co.to(tl.int64)[:, None] * sgc
    x_chan = ci.to(tl.int64)[:, None] * sxc

    acc = to_compute(tl.zeros([BLOCK_O, BLOCK_I], dtype=tl.float32), FP64)
    for n in range(n_lo, n_hi):
        # sum_p g[n, o, p] x[n, i, p + tap] first; d[n, o] s[n, i] scale it once per sample, so
        # the tile products run on the stored values, not on rounded scaled copies.
        inner = to_compute(tl.zeros([BLOCK_O, BLOCK_I], dtype=tl.float32), FP64)
        for p0 in range(p_lo, p_hi, BLOCK_P):
            p = p0 + tl.arange(0, BLOCK_P)
            p_ok = p < p_hi
            oy = p // OW
            ox = p % OW
            iy = oy + (ky - pad_y0)
            ix = ox + (kx - pad_x0)
            pix_ok = p_ok & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
            gt = tl.load(g_ptr + n * sgn + g_chan + (oy.to(tl.int64) * sgh + ox.to(tl.int64) * sgw)[None, :],
                         mask=o_ok[:, None] & p_ok[None, :], other=0)
            xt = tl.load(x_ptr + n * sxn + x_chan + (iy.to(tl.int64) * sxh + ix.to(tl.int64) * sxw)[None, :],
                         mask=i_ok[:, None] & pix_ok[None, :], other=0)
            if USE_DOT:
                if LOWP_DOT:
                    inner = tl.dot(gt, tl.trans(xt), inner)
                else:
                    inner = tl.dot(gt.to(tl.float32), tl.trans(xt.to(tl.float32)), inner, input_precision="ieee")
            else:
                inner += tl.sum(to_compute(gt, FP64)[:, None, :] * to_compute(xt, FP64)[None, :, :], axis=2)
        dn = tl.load(d_ptr + n * O + co, mask=o_ok, other=0)
        sn = tl.load(s_ptr + n * I + ci, mask=i_ok, other=0)
        acc += inner * dn[:, None] * sn[None, :]
    tl.store(ws_ptr + ((split * KH * KW + tap) * O + co[:, None]) * I + ci[None, :],
             acc.to(ws_ptr.dtype.element_ty), mask=o_ok[:, None] & i_ok[None, :])


def weight_grad(g, x, d, s, partial, pad_x0, pad_y0, samples_per_split, pixel_splits, pixels_per_split):
    """partial[j, ky, kx, o, i] = the sum over reduction split j of d[n, o] s[n, i] g[n, o, p]
    x[n, i, p + (ky, kx) - pad]: split j covers samples [j // pixel_splits * samples_per_split,
    + samples_per_split) and of each the pixels [(j % pixel_splits) * pixels_per_split,
    + pixels_per_split); the caller adds the splits up. g [N, O, OH, OW] and x [N, I, H, W] in
    any strides and the same dtype; d [N, O], s [N, I] and partial dense in the compute dtype."""
    n, in_channels, h, wd = x.shape
    _, out_channels, oh, ow = g.shape
    splits, kh, kw = partial.shape[:3]
    pixels = oh * ow
    fp64, lowp = _dot_mode(x.dtype)
    block_o, block_i, block_p = _pow2(out_channels, 16, 64), _pow2(in_channels, 16, 64), _pow2(pixels, 16, 64)
    if fp64:
        block_o, block_i, block_p = _pow2(out_channels, 1, 16), _pow2(in_channels, 1, 16), _pow2(pixels, 1, 16)
    tiles = triton.cdiv(out_channels, block_o) * triton.cdiv(in_channels, block_i)
    modulated_conv2d_weight_grad_kernel[(tiles, kh * kw, splits)](
        g, x, d, s, partial, n, in_channels, out_channels, h, wd, ow, pixels,
        samples_per_split, pixel_splits, pixels_per_split,
        *g.stride(), *x.stride(), pad_x0, pad_y0,
        KH=kh, KW=kw, USE_DOT=not fp64, LOWP_DOT=lowp, FP64=fp64,
        BLOCK_O=block_o, BLOCK_I=block_i, BLOCK_P=block_p)
