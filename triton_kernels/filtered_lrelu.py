"""filtered_lrelu in Triton: one program per 16x16 tile of output pixels of one (n, c) plane.

Same contract as csrc/include/nerfgan_distill/filtered_lrelu.h. Each stage of the pipeline is a
pair of matrix products with banded tap matrices, so the intermediate tile lives in registers
and the filtering runs as tl.dot products:

    t = Ay @ x_tile @ Ax^T       (Ay[r, q] = taps_y[(iy0 + q) * up - (ty0 + r) + pad_ay0])
    out = By @ a(t) @ Bx^T       (By[o, r] = taps_y[r - o * down])

A separable filter is one such pair; a dense 2-D filter is the sum of its singular-value terms
(exact to rounding), so both kinds take the same path. `forward` and `backward` launch the two
passes (activating, writing sign codes; masked, reading them).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..kernel_codes import FILTERED_LRELU_PASS, FILTERED_LRELU_SIGN
from ._common import to_compute

_ACTIVATE = tl.constexpr(FILTERED_LRELU_PASS["activate"])
_MASKED = tl.constexpr(FILTERED_LRELU_PASS["masked"])
_POSITIVE = tl.constexpr(FILTERED_LRELU_SIGN["positive"])
_NEGATIVE = tl.constexpr(FILTERED_LRELU_SIGN["negative"])
_CLAMPED = tl.constexpr(FILTERED_LRELU_SIGN["clamped"])

_BO = 16  # output pixels per tile side (tl.dot's smallest block)


@triton.jit
def _band(taps_ptr, index, valid):
    return tl.load(taps_ptr + tl.where(valid, index, 0), mask=valid, other=0)


@triton.jit
def _dot(a, b, FP64: tl.constexpr):
    if FP64:
        return tl.dot(a, b)
    else:
        return tl.dot(a, b, input_precision="ieee")


@triton.jit
def filtered_lrelu_kernel(x_ptr, b_ptr, fa_ptr, fb_ptr, out_ptr, codes_ptr, C, H, W, TH, TW, OH, OW,
                          sxn, sxc, sxh, sxw, son, soc, soh, sow, pad_ax0, pad_ay0, pad_bx0, pad_by0,
                          offset_y, offset_x, tiles_y, tiles_x, scalars_ptr,
                          UP: tl.constexpr, DOWN: tl.constexpr, FAH: tl.constexpr, FAW: tl.constexpr,
                          RA: tl.constexpr, FBH: tl.constexpr, FBW: tl.constexpr, RB: tl.constexpr,
                          PASS: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_CODES: tl.constexpr,
                          HAS_CLAMP: tl.constexpr, FP64: tl.constexpr,
                          BO: tl.constexpr, BT: tl.constexpr, BI: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    slope = tl.load(scalars_ptr)  # in the compute precision: a kernel's float scalar is fp32
    clamp = tl.load(scalars_ptr + 1)
    tile_x = pid % tiles_x
    tile_y = (pid // tiles_x) % tiles_y
    plane = pid // (tiles_x * tiles_y)
    n = plane // C
    c = plane % C
    oy0 = tile_y * BO
    ox0 = tile_x * BO
    ty0 = oy0 * DOWN - pad_by0
    tx0 = ox0 * DOWN - pad_bx0
    # First input row and column read: ceil((ty0 - pad_ay0) / UP), with offsets (multiples of UP)
    # that keep the numerator >= 0, as // and % differ on negatives between backends.
    iy0 = (ty0 - pad_ay0 + offset_y + UP - 1) // UP - offset_y // UP
    ix0 = (tx0 - pad_ax0 + offset_x + UP - 1) // UP - offset_x // UP
    q = tl.arange(0, BI)
    r = tl.arange(0, BT)
    o = tl.arange(0, BO)

    iy = iy0 + q
    ix = ix0 + q
    inside_x = (iy[:, None] >= 0) & (iy[:, None] < H) & (ix[None, :] >= 0) & (ix[None, :] < W)
    x_tile = tl.load(x_ptr + n * sxn + c * sxc + iy[:, None] * sxh + ix[None, :] * sxw, mask=inside_x, other=0)
    x_tile = to_compute(x_tile, FP64)
    if HAS_BIAS:
        x_tile = tl.where(inside_x, x_tile + to_compute(tl.load(b_ptr + c), FP64), 0)

    # Stage A: t[r, s] = sum_q,q' Ay[r, q] x[q, q'] Ax[s, q'], one term per rank of fa.
    ky = iy[None, :] * UP - (ty0 + r[:, None]) + pad_ay0  # [BT, BI]
    kx = ix[None, :] * UP - (tx0 + r[:, None]) + pad_ax0
    t = to_compute(tl.zeros([BT, BT], dtype=tl.float32), FP64)
    for rank in tl.static_range(RA):
        ay = _band(fa_ptr + rank * (FAH + FAW), ky, (ky >= 0) & (ky < FAH))
        ax = _band(fa_ptr + rank * (FAH + FAW) + FAH, kx, (kx >= 0) & (kx < FAW))
        t += _dot(_dot(ay, x_tile, FP64), tl.trans(ax), FP64)

    ty = ty0 + r[:, None]
    tx = tx0 + r[None, :]
    inside_t = (ty >= 0) & (ty < TH) & (tx >= 0) & (tx < TW)
    code_ptrs = codes_ptr + plane * TH * TW + ty * TW + tx
    if PASS == _ACTIVATE:  # (the gain is in fa's taps)
        v = t
        negative = v <= 0  # torch's leaky_relu takes the slope's branch at 0
        v = tl.where(negative, v * slope, v)
        code = tl.where(negative, _NEGATIVE, _POSITIVE)
        if HAS_CLAMP:
            clamped = (v > clamp) | (v < -clamp)
            v = tl.where(clamped, tl.where(v > 0, clamp, -clamp).to(v.dtype), v)
            code = tl.where(clamped, _CLAMPED, code)
        if WRITE_CODES:  # each code by the tile owning its band of rows and columns
            first_y, last_y = (tile_y == 0).to(tl.int64), (tile_y == tiles_y - 1).to(tl.int64)
            first_x, last_x = (tile_x == 0).to(tl.int64), (tile_x == tiles_x - 1).to(tl.int64)
            lo_y, hi_y = ty0 * (1 - first_y), (ty0 + BO * DOWN) * (1 - last_y) + TH * last_y
            lo_x, hi_x = tx0 * (1 - first_x), (tx0 + BO * DOWN) * (1 - last_x) + TW * last_x
            own = (ty >= lo_y) & (ty < hi_y) & (tx >= lo_x) & (tx < hi_x)
            tl.store(code_ptrs, code.to(tl.uint8), mask=inside_t & own)
    else:
        code = tl.load(code_ptrs, mask=inside_t, other=0)
        v = t * tl.where(code == _POSITIVE, 1.0, tl.where(code == _NEGATIVE, slope, 0.0)).to(t.dtype)
    v = tl.where(inside_t, v, 0)

    # Stage B: out[o, o'] = sum_r,s By[o, r] a[r, s] Bx[o', s].
    kb = r[None, :] - o[:, None] * DOWN  # [BO, BT]
    out = to_compute(tl.zeros([BO, BO], dtype=tl.float32), FP64)
    for rank in tl.static_range(RB):
        by = _band(fb_ptr + rank * (FBH + FBW), kb, (kb >= 0) & (kb < FBH))
        bx = _band(fb_ptr + rank * (FBH + FBW) + FBH, kb, (kb >= 0) & (kb < FBW))
        out += _dot(_dot(by, v, FP64), tl.trans(bx), FP64)
    oy = oy0 + o[:, None]
    ox = ox0 + o[None, :]
    tl.store(out_ptr + n * son + c * soc + oy * soh + ox * sow, out.to(out_ptr.dtype.element_ty),
             mask=(oy < OH) & (ox < OW))


def rank_terms(taps: torch.Tensor) -> torch.Tensor:
    """[R, taps_h + taps_w]: each row a (y taps, x taps) pair whose outer products sum to the
    filter. A separable 1-D filter is one pair; a dense one its singular-value terms, dropping
    those below rounding."""
    if taps.ndim == 1:
        return torch.cat([taps, taps])[None].contiguous()
    u, s, vh = torch.linalg.svd(taps.double(), full_matrices=False)
    keep = s > s[0] * torch.finfo(taps.dtype).eps
    if not bool(keep.any()):  # an all-zero filter
        keep[0] = True
    return torch.cat([u[:, keep] * s[keep], vh[keep].T], dim=0).T.to(taps.dtype).contiguous()


def _next_pow2(v: int) -> int:
    return max(16, triton.next_power_of_2(v))


def _launch(pass_code, x, b, fa, fb, out, codes, t_hw, up, pad_a, down, pad_b, gain, slope, clamp):
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    ta, tb = rank_terms(fa), rank_terms(fb)
    fah, faw = (fa.shape[0],) * 2 if fa.ndim == 1 else fa.shape
    ta[:, :fah] *= gain  # in the taps' precision (fp64 for fp64), not as a kernel's fp32 scalar
    fbh, fbw = (fb.shape[0],) * 2 if fb.ndim == 1 else fb.shape
    bt = _next_pow2((_BO - 1) * down + max(fbh, fbw))
    bi = _next_pow2((bt + max(fah, faw) - 2) // up + 2)
    tiles_y, tiles_x = triton.cdiv(oh, _BO), triton.cdiv(ow, _BO)
    # Multiples of `up` at least as large as any negative numerator of the first-row division.
    offset_y = up * ((pad_a[1] + pad_b[1]) // up + 1)
    offset_x = up * ((pad_a[0] + pad_b[0]) // up + 1)
    write_codes = codes.numel() > 0
    filtered_lrelu_kernel[(n * c * tiles_y * tiles_x,)](
        x, b if b is not None else x, ta, tb, out, codes if write_codes else out, c, h, w, t_hw[0], t_hw[1], oh, ow,
        *x.stride(), *out.stride(), pad_a[0], pad_a[1], pad_b[0], pad_b[1], offset_y, offset_x, tiles_y, tiles_x,
        torch.tensor([slope, clamp], dtype=ta.dtype, device=x.device),
        UP=up, DOWN=down, FAH=fah, FAW=faw, RA=ta.shape[0], FBH=fbh, FBW=fbw, RB=tb.shape[0], PASS=pass_code,
        HAS_BIAS=b is not None, WRITE_CODES=write_codes, HAS_CLAMP=clamp >= 0, FP64=x.element_size() == 8,
        BO=_BO, BT=bt, BI=bi)


def forward(x, b, fa, fb, out, codes, t_hw, up, pad_a, down, pad_b, gain, slope, clamp):
    """The activating pass (writes codes unless it is empty)."""
    _launch(FILTERED_LRELU_PASS["activate"], x, b, fa, fb, out, codes, t_hw, up, pad_a, down, pad_b, gain, slope,
            clamp)


def backward(g, b, fa, fb, out, codes, t_hw, up, pad_a, down, pad_b, gain, slope, clamp):
    """The masked pass (reads codes; b is None)."""
    _launch(FILTERED_LRELU_PASS["masked"], g, None, fa, fb, out, codes, t_hw, up, pad_a, down, pad_b, gain, slope,
            clamp)
