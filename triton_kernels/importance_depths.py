"""importance_depths in Triton: EG3D's sample_importance with the uniforms given (weight
smoothing, then sample_pdf's inverse cdf), for a block of rays per program.

Same contract and per-ray math as importance_cdf and importance_depth in
csrc/include/nerfgan_distill/render_triplanes.h: depths [rays, D] (sorted along D), weights
[rays, D-1], u [rays, Di] and out [rays, Di], all dense and in the compute type (fp32, or
fp64 for fp64). A ray's cdf is a [BLOCK_R, BLOCK_K] tile (BLOCK_K the power of two >=
D - 2, the cdf's D - 3 + 1 entries): the inner smoothed weights plus eps, divided by
their sum, then a cumulative sum from a leading 0. Each u's searchsorted(right=True) is
the count of cdf entries <= u; the interpolation keeps sample_pdf's quirks (indices
clamped to the cdf, bins = coarse midpoints indexed with cdf indices, a cdf step under
1e-5 counts as 1).
"""
from __future__ import annotations

import triton
import triton.language as tl

from ..kernel_codes import RENDER_MAX_SAMPLES
from .render_triplanes import _col_at, _nan_max

# The most coarse depths per ray (kernel_codes' RENDER_MAX_SAMPLES, as the C++ kernels); the op
# checks it before launching.
MAX_COARSE = RENDER_MAX_SAMPLES

_PDF_EPS: tl.constexpr = tl.constexpr(1e-5)  # sample_pdf's eps


@triton.jit
def importance_depths_forward_kernel(depths_ptr, weights_ptr, u_ptr, out_ptr, R, D, DI,
                             BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    r_mask = r < R
    cols = tl.arange(0, BLOCK_K)  # cdf entries 0..K
    K = D - 3  # sample_pdf's weights: the inner D - 3 smoothed weights of the D - 1 interval weights
    inner = r_mask[:, None] & ((cols >= 1) & (cols <= K))[None, :]
    # cdf column c (1..K) comes from smoothed weight c, the 2-tap max then 2-tap mean of
    # interval weights c - 1, c, c + 1 (all inside the ray: the edge rule never applies).
    w_row = (r * (D - 1))[:, None] + cols[None, :]
    w_a = tl.load(weights_ptr + w_row - 1, mask=inner, other=0)
    w_b = tl.load(weights_ptr + w_row, mask=inner, other=0)
    w_c = tl.load(weights_ptr + w_row + 1, mask=inner, other=0)
    hundredth = tl.full((BLOCK_R, BLOCK_K), 0.01, w_b.dtype)
    eps = tl.full((BLOCK_R, BLOCK_K), _PDF_EPS, w_b.dtype)
    eps_r = tl.full((BLOCK_R,), _PDF_EPS, w_b.dtype)
    pdf = tl.where(inner, ((_nan_max(w_a, w_b) + _nan_max(w_b, w_c)) / 2 + hundredth) + eps, 0)
    total = tl.sum(pdf, axis=1)
    total = tl.where(r_mask, total, 1)  # rows past the last ray: no 0 / 0
    cdf = tl.cumsum(tl.where(inner, pdf / total[:, None], 0), axis=1)  # column 0 stays 0
    in_cdf = (cols <= K)[None, :]
    z_row = r * D
    u_row = r * DI
    for j in range(DI):
        u = tl.load(u_ptr + u_row + j, mask=r_mask, other=0)
        count = tl.sum((in_cdf & (cdf <= u[:, None])).to(tl.int32), axis=1)  # searchsorted(right=True)
        below = tl.maximum(count - 1, 0)
        above = tl.minimum(count, K)
        cdf_below = _col_at(cdf, cols, below)
        cdf_above = _col_at(cdf, cols, above)
        bin_below = (tl.load(depths_ptr + z_row + below, mask=r_mask, other=0)
                     + tl.load(depths_ptr + z_row + below + 1, mask=r_mask, other=0)) / 2
        bin_above = (tl.load(depths_ptr + z_row + above, mask=r_mask, other=0)
                     + tl.load(depths_ptr + z_row + above + 1, mask=r_mask, other=0)) / 2
        denom = cdf_above - cdf_below
        denom = tl.where(denom < eps_r, 1.0, denom)
        t = bin_below + (u - cdf_below) / denom * (bin_above - bin_below)
        tl.store(out_ptr + u_row + j, t.to(out_ptr.dtype.element_ty), mask=r_mask)


def forward(depths, weights, u, out):
    """Fine depths out [R, Di] from depths [R, D], weights [R, D-1] and u [R, Di] (dense, one
    compute dtype; 4 <= D <= MAX_COARSE)."""
    rays, d = depths.shape
    di = u.shape[1]
    if rays == 0 or di == 0:
        return
    block_k = triton.next_power_of_2(d - 2)
    block_r = max(1, min(64, 4096 // block_k))
    importance_depths_forward_kernel[(triton.cdiv(rays, block_r),)](depths, weights, u, out, rays, d, di,
                                                            BLOCK_R=block_r, BLOCK_K=block_k)
