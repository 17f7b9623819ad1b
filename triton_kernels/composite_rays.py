"""composite_rays in Triton (EG3D's MipRayMarcher2): one program per block of rays,
a sequential walk over each ray's intervals, the channels as a vector.

Same contract as csrc/include/nerfgan_distill/composite_rays.h: colors [rays, S, C],
densities and depths [rays, S], all dense and of one dtype; depth_range the global
(min, max) depth in compute precision; rgb [rays, C], depth [rays] and weights
[rays, S-1] dense. The backward walks each ray forward (saving the transmittance in
a compute-precision scratch) and then in reverse.
"""
from __future__ import annotations

import triton
import triton.language as tl

from ._common import to_compute

_INF: tl.constexpr = tl.constexpr(float("inf"))
_FLOOR: tl.constexpr = tl.constexpr(1e-10)  # EG3D's 1 - alpha + 1e-10: T never reaches zero


@triton.jit
def _interval(d0, d1, t0, t1):
    """delta, softplus input x, exp(min(x, 20)), keep = exp(-softplus(x) * delta) and alpha
    of the interval [t0, t1] between samples with raw densities d0, d1."""
    delta = t1 - t0
    x = (d0 + d1) / 2 - 1
    z = tl.exp(tl.where(x > 20, 20.0, x))
    # log1p(z) without libdevice: log(u) * z / (u - 1) cancels the rounding of u = 1 + z.
    u = 1 + z
    log1p = tl.where(u == 1, z, tl.log(u) * (z / (u - 1)))
    softplus = tl.where(x > 20, x, log1p)  # torch's threshold 20
    keep = tl.exp(-(softplus * delta))
    return delta, x, z, keep, 1 - keep


@triton.jit
def _rays(R, S, C, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Ray indices, sample row offsets, channel indices and masks of this program."""
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    r_mask = r < R
    chan = tl.arange(0, BLOCK_C)
    mask = r_mask[:, None] & (chan < C)[None, :]
    return r, r_mask, chan, mask, r * S, (r * S * C)[:, None] + chan[None, :]


@triton.jit
def composite_rays_forward_kernel(colors_ptr, densities_ptr, depths_ptr, range_ptr, rgb_ptr, depth_ptr, weights_ptr,
                              R, S, C, WHITE_BACK: tl.constexpr, FP64: tl.constexpr,
                              BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    r, r_mask, chan, mask, row, crow = _rays(R, S, C, BLOCK_R, BLOCK_C)
    t_prev = to_compute(tl.load(depths_ptr + row, mask=r_mask, other=0), FP64)
    d_prev = to_compute(tl.load(densities_ptr + row, mask=r_mask, other=0), FP64)
    col_prev = to_compute(tl.load(colors_ptr + crow, mask=mask, other=0), FP64)
    trans = tl.zeros_like(t_prev) + 1
    w_sum = tl.zeros_like(t_prev)
    d_sum = tl.zeros_like(t_prev)
    acc = tl.zeros_like(col_prev)
    w_row = r * (S - 1)
    for k in range(1, S):
        t = to_compute(tl.load(depths_ptr + row + k, mask=r_mask, other=0), FP64)
        d = to_compute(tl.load(densities_ptr + row + k, mask=r_mask, other=0), FP64)
        col = to_compute(tl.load(colors_ptr + crow + k * C, mask=mask, other=0), FP64)
        _, _, _, _, alpha = _interval(d_prev, d, t_prev, t)
        w = alpha * trans
        trans = trans * ((1 - alpha) + _FLOOR)
        tl.store(weights_ptr + w_row + (k - 1), w.to(weights_ptr.dtype.element_ty), mask=r_mask)
        w_sum += w
        d_sum += w * ((t_prev + t) / 2)
        acc += w[:, None] * ((col_prev + col) / 2)
        t_prev = t
        d_prev = d
        col_prev = col
    # 0/0 (a ray with no weight) takes the largest depth; the clamp bounds are global.
    depth = d_sum / w_sum
    depth = tl.where(depth != depth, _INF, depth)
    lo = tl.load(range_ptr)
    hi = tl.load(range_ptr + 1)
    depth = tl.where(depth < lo, lo, tl.where(depth > hi, hi, depth))
    tl.store(depth_ptr + r, depth.to(depth_ptr.dtype.element_ty), mask=r_mask)
    if WHITE_BACK:
        acc += (1 - w_sum)[:, None]
    rgb = acc * 2 - 1
    tl.store(rgb_ptr + r[:, None] * C + chan[None, :], rgb.to(rgb_ptr.dtype.element_ty), mask=mask)


@triton.jit
def composite_rays_backward_kernel(colors_ptr, densities_ptr, depths_ptr, range_ptr, weights_ptr,
                              grad_rgb_ptr, grad_depth_ptr, grad_weights_ptr, trans_ptr,
                              grad_colors_ptr, grad_densities_ptr, R, S, C, WHITE_BACK: tl.constexpr,
                              FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    r, r_mask, chan, mask, row, crow = _rays(R, S, C, BLOCK_R, BLOCK_C)
    w_row = r * (S - 1)

    # Pass 1, forward: the transmittance before each interval and the depth sums.
    t_prev = to_compute(tl.load(depths_ptr + row, mask=r_mask, other=0), FP64)
    d_prev = to_compute(tl.load(densities_ptr + row, mask=r_mask, other=0), FP64)
    trans = tl.zeros_like(t_prev) + 1
    w_sum = tl.zeros_like(t_prev)
    d_sum = tl.zeros_like(t_prev)
    for k in range(1, S):
        t = to_compute(tl.load(depths_ptr + row + k, mask=r_mask, other=0), FP64)
        d = to_compute(tl.load(densities_ptr + row + k, mask=r_mask, other=0), FP64)
        _, _, _, _, alpha = _interval(d_prev, d, t_prev, t)
        tl.store(trans_ptr + w_row + (k - 1), trans, mask=r_mask)
        w = alpha * trans
        trans = trans * ((1 - alpha) + _FLOOR)
        w_sum += w
        d_sum += w * ((t_prev + t) / 2)
        t_prev = t
        d_prev = d
    raw = d_sum / w_sum
    lo = tl.load(range_ptr)
    hi = tl.load(range_ptr + 1)
    # nan_to_num and clamp pass the depth gradient only where raw was finite and in range.
    g_depth = to_compute(tl.load(grad_depth_ptr + r, mask=r_mask, other=0), FP64)
    in_range = (tl.abs(raw) < _INF) & (raw >= lo) & (raw <= hi)
    g_depth = tl.where(in_range, g_depth / w_sum, 0.0)
    raw = tl.where(in_range, raw, 0.0)  # 0 * NaN would poison a ray with no weight
    g_rgb = to_compute(tl.load(grad_rgb_ptr + r[:, None] * C + chan[None, :], mask=mask, other=0), FP64)
    # d rgb / d w_k = 2 * color_mid - 2 * white_back (the output is mapped by * 2 - 1).
    g_white = tl.sum(g_rgb, axis=1) * 2 if WHITE_BACK else tl.zeros_like(raw)

    # Pass 2, reverse: suffix = sum over later intervals j of dL/dw_j * w_j.
    t_next = to_compute(tl.load(depths_ptr + row + (S - 1), mask=r_mask, other=0), FP64)
    d_next = to_compute(tl.load(densities_ptr + row + (S - 1), mask=r_mask, other=0), FP64)
    col_next = to_compute(tl.load(colors_ptr + crow + (S - 1) * C, mask=mask, other=0), FP64)
    suffix = tl.zeros_like(raw)
    dx_next = tl.zeros_like(raw)
    w_next = tl.zeros_like(raw)
    for i in range(0, S - 1):
        k = S - 2 - i
        t = to_compute(tl.load(depths_ptr + row + k, mask=r_mask, other=0), FP64)
        d = to_compute(tl.load(densities_ptr + row + k, mask=r_mask, other=0), FP64)
        col = to_compute(tl.load(colors_ptr + crow + k * C, mask=mask, other=0), FP64)
        delta, x, z, keep, alpha = _interval(d, d_next, t, t_next)
        trans = tl.load(trans_ptr + w_row + k, mask=r_mask, other=0)
        w = to_compute(tl.load(weights_ptr + w_row + k, mask=r_mask, other=0), FP64)
        g_w = to_compute(tl.load(grad_weights_ptr + w_row + k, mask=r_mask, other=0), FP64)
        g_w += 2 * tl.sum(g_rgb * ((col + col_next) / 2), axis=1) - g_white + g_depth * ((t + t_next) / 2 - raw)
        # w_k = alpha_k * T_k and every later T_j holds the factor (1 - alpha_k + 1e-10).
        g_alpha = g_w * trans - suffix / ((1 - alpha) + _FLOOR)
        suffix += g_w * w
        sig = tl.where(x > 20, 1.0, z / (z + 1))  # softplus'(x), torch's threshold
        dx = g_alpha * delta * keep * sig
        # Sample k + 1 is the end of interval k and the start of interval k + 1.
        tl.store(grad_densities_ptr + row + (k + 1), ((dx + dx_next) / 2).to(grad_densities_ptr.dtype.element_ty),
                 mask=r_mask)
        tl.store(grad_colors_ptr + crow + (k + 1) * C,
                 (g_rgb * (w + w_next)[:, None]).to(grad_colors_ptr.dtype.element_ty), mask=mask)
        t_next = t
        d_next = d
        col_next = col
        dx_next = dx
        w_next = w
    tl.store(grad_densities_ptr + row, (dx_next / 2).to(grad_densities_ptr.dtype.element_ty), mask=r_mask)
    tl.store(grad_colors_ptr + crow, (g_rgb * w_next[:, None]).to(grad_colors_ptr.dtype.element_ty), mask=mask)


def _grid(rays: int, c: int):
    block_c = max(1, triton.next_power_of_2(c))
    block_r = max(1, min(64, 2048 // block_c))
    return (triton.cdiv(rays, block_r),), block_r, block_c


def forward(colors, densities, depths, depth_range, rgb, depth, weights, white_back):
    """Composite colors [R, S, C] into rgb [.., C], depth [..] and weights [.., S-1] (dense)."""
    rays, s, c = colors.shape
    if rays == 0:
        return
    grid, block_r, block_c = _grid(rays, c)
    composite_rays_forward_kernel[grid](
        colors, densities, depths, depth_range, rgb, depth, weights, rays, s, c,
        WHITE_BACK=bool(white_back), FP64=depth_range.element_size() == 8, BLOCK_R=block_r, BLOCK_C=block_c)


def backward(colors, densities, depths, depth_range, weights, grad_rgb, grad_depth, grad_weights, transmittance,
             grad_colors, grad_densities, white_back):
    """Write grad_colors [R, S, C] and grad_densities [R, S]; `transmittance` is a
    [R, S-1] compute-precision scratch."""
    rays, s, c = colors.shape
    if rays == 0:
        return
    grid, block_r, block_c = _grid(rays, c)
    composite_rays_backward_kernel[grid](
        colors, densities, depths, depth_range, weights, grad_rgb, grad_depth, grad_weights, transmittance,
        grad_colors, grad_densities, rays, s, c,
        WHITE_BACK=bool(white_back), FP64=depth_range.element_size() == 8, BLOCK_R=block_r, BLOCK_C=block_c)
