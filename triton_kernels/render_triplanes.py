"""render_triplanes in Triton, fused, inference only: EG3D's ImportanceRenderer (coarse
stratified pass, importance sampling, fine pass, sort, final composite) for a block of
rays per program, with no per-sample tensors in global memory.

Same per-ray algorithm and operation order as render_ray_pointwise in
csrc/include/nerfgan_distill/render_triplanes.h (what the CUDA kernel runs): the coarse and fine
passes evaluate densities only; the final walk re-decodes each sample's colors in depth
order and composites it with the previous one. A ray's samples (depths, raw densities,
coarse weights, cdf) live in registers as [BLOCK_R, BLOCK_S] tiles, BLOCK_S the power of
two >= D + Di; sample k of every ray in the block is read out of a tile with a masked
sum over the sample axis and written back with a select.

The batch-wide steps run around the kernel, in torch, on per-ray values only: the ray
spans for ray_start = ray_end = 'auto' (the ray-box test and the misses' fallback, the
reference's own code) before it, and EG3D's clamp of every depth to the batch's depth
range after it (the kernel writes each ray's smallest and largest sample depth).

Stochastic mode draws the same numbers as the CPU and CUDA kernels (philox.h):
Philox4x32-10 with key = the 64-bit seed and counter (sample, stream, ray low, ray high);
stream 0 the coarse jitter, stream 1 the importance uniforms; 24-bit floats (53-bit
doubles).
"""
from __future__ import annotations

import struct

import torch
import triton
import triton.language as tl

from ..kernel_codes import RENDER_CUDA_MAX_CHANNELS, RENDER_CUDA_MAX_OUTPUTS, RENDER_MAX_SAMPLES
from ._common import to_compute
from .composite_rays import _interval
from .sample_triplanes import _gather, _locate, _pick

# The kernel's bounds (render_triplanes routes larger renders to the composable path):
# samples per ray (coarse + fine), plane channels and decoder outputs (1 + C_out).
MAX_SAMPLES = RENDER_MAX_SAMPLES
MAX_CHANNELS = RENDER_CUDA_MAX_CHANNELS
MAX_OUTPUTS = RENDER_CUDA_MAX_OUTPUTS

_FLOOR: tl.constexpr = tl.constexpr(1e-10)  # EG3D's 1 - alpha + 1e-10
_PDF_EPS: tl.constexpr = tl.constexpr(1e-5)  # sample_pdf's eps
_PAD: tl.constexpr = tl.constexpr(0.001)  # the decoder's widened sigmoid: range (-0.001, 1.001)


# --- Philox4x32-10 (philox.h) -------------------------------------------------------------------

@triton.jit
def _philox(c0, c1, c2, c3, k0, k1):
    """Ten rounds of Philox4x32 on uint32 counter words (c0..c3) under key (k0, k1)."""
    for _ in tl.static_range(10):
        m0 = tl.full(c0.shape, 0xD2511F53, tl.uint32)
        m1 = tl.full(c0.shape, 0xCD9E8D57, tl.uint32)
        hi0 = tl.umulhi(m0, c0)
        lo0 = m0 * c0
        hi1 = tl.umulhi(m1, c2)
        lo1 = m1 * c2
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = k0 + tl.full(k0.shape, 0x9E3779B9, tl.uint32)
        k1 = k1 + tl.full(k1.shape, 0xBB67AE85, tl.uint32)
    return c0, c1, c2, c3


@triton.jit
def _uniform(k0, k1, ray, stream, index, FP64: tl.constexpr):
    """philox::uniform: the uniform in [0, 1) of draw `index` of `stream` on rays `ray` (int64)."""
    zero = tl.zeros(ray.shape, tl.uint32)
    c0 = (tl.zeros(ray.shape, tl.int64) + index).to(tl.uint32)
    c1 = (tl.zeros(ray.shape, tl.int64) + stream).to(tl.uint32)
    c2 = (ray & 0xFFFFFFFF).to(tl.uint32)
    c3 = (ray >> 32).to(tl.uint32)
    v0, v1, _, _ = _philox(c0, c1, c2, c3, zero + k0, zero + k1)
    if FP64:
        bits = ((v0 >> 5).to(tl.uint64) << 26) | (v1 >> 6).to(tl.uint64)
        u = bits.to(tl.float64) * 1.1102230246251565e-16
    else:
        u = (v0 >> 8).to(tl.float32) * 5.9604644775390625e-8
    return u


@triton.jit
def philox_test_kernel(ctr_ptr, key_ptr, out_ptr):
    """Philox4x32-10 of one counter and key (uint32 words), for the known-answer test."""
    i = tl.arange(0, 1)
    c0 = tl.load(ctr_ptr + i)
    c1 = tl.load(ctr_ptr + 1 + i)
    c2 = tl.load(ctr_ptr + 2 + i)
    c3 = tl.load(ctr_ptr + 3 + i)
    v0, v1, v2, v3 = _philox(c0, c1, c2, c3, tl.load(key_ptr + i), tl.load(key_ptr + 1 + i))
    tl.store(out_ptr + i, v0)
    tl.store(out_ptr + 1 + i, v1)
    tl.store(out_ptr + 2 + i, v2)
    tl.store(out_ptr + 3 + i, v3)


# --- per-ray helpers -----------------------------------------------------------------------------

@triton.jit
def _const(bits, FP64: tl.constexpr):
    """A double passed as its bits (a float argument would be rounded to fp32), as T."""
    return to_compute(bits.to(tl.float64, bitcast=True), FP64)


@triton.jit
def _col(tile, cols, k):
    """Column k (a scalar) of a [BLOCK_R, BLOCK_S] tile."""
    return tl.sum(tl.where(cols[None, :] == k, tile, 0), axis=1)


@triton.jit
def _col_at(tile, cols, k):
    """Column k[i] of row i of a [BLOCK_R, BLOCK_S] tile."""
    return tl.sum(tl.where(cols[None, :] == k[:, None], tile, 0), axis=1)


@triton.jit
def _put(tile, cols, k, value):
    """The tile with column k (a scalar) set to value [BLOCK_R]."""
    return tl.where(cols[None, :] == k, value[:, None], tile)


@triton.jit
def _nan_max(a, b):
    """torch.maximum: NaN wins."""
    return tl.where(a != a, a, tl.where((b != b) | (b > a), b, a))


@triton.jit
def _softplus(x):
    """torch's softplus (threshold 20), log1p without libdevice as composite_rays does."""
    z = tl.exp(tl.where(x > 20, 20.0, x))
    u = 1 + z
    log1p = tl.where(u == 1, z, tl.log(u) * (z / (u - 1)))
    return tl.where(x > 20, x, log1p)


@triton.jit
def _linspace_at(start, end, count, i):
    """Element i (scalar) of torch.linspace(start, end, count), its two-sided formula."""
    step = (end - start) / (count - 1)
    low = start + step * i
    high = end - step * (count - 1 - i)
    value = tl.where(i < count // 2, low, high)
    return tl.where(count == 1, start, value)


@triton.jit
def _plane(planes_ptr, base, chan, mask, gx, gy, W, H, sp_c, sp_h, sp_w, FP64: tl.constexpr):
    """One plane's bilinear features [BLOCK_R, BLOCK_C] at grid points (gx, gy); NaN at NaN points."""
    x0, y0, wx0, wx1, wy0, wy1, ok, vx0, vx1, vy0, vy1 = _locate(gx, gy, W, H)
    v0, v1, v2, v3 = _gather(planes_ptr, base, chan * sp_c, x0, y0, sp_h, sp_w, vx0, vx1, vy0, vy1, mask, FP64)
    value = ((wx0 * wy0)[:, None] * v0 + (wx1 * wy0)[:, None] * v1) + (wx0 * wy1)[:, None] * v2 + \
        (wx1 * wy1)[:, None] * v3
    return tl.where(ok[:, None], value, float("nan"))


@triton.jit
def _features(planes_ptr, item_base, chan, mask, ox, oy, oz, dx, dy, dz, t, scale, W, H,
              sp_p, sp_c, sp_h, sp_w, AX0: tl.constexpr, AX1: tl.constexpr, AX2: tl.constexpr,
              AX3: tl.constexpr, AX4: tl.constexpr, AX5: tl.constexpr, FP64: tl.constexpr):
    """The mean of the three planes' features [BLOCK_R, BLOCK_C] at o + t d (0 in padded channels)."""
    x = (ox + t * dx) * scale
    y = (oy + t * dy) * scale
    z = (oz + t * dz) * scale
    a = _plane(planes_ptr, item_base, chan, mask, _pick(x, y, z, AX0), _pick(x, y, z, AX1), W, H,
               sp_c, sp_h, sp_w, FP64)
    b = _plane(planes_ptr, item_base + sp_p, chan, mask, _pick(x, y, z, AX2), _pick(x, y, z, AX3), W, H,
               sp_c, sp_h, sp_w, FP64)
    c = _plane(planes_ptr, item_base + 2 * sp_p, chan, mask, _pick(x, y, z, AX4), _pick(x, y, z, AX5), W, H,
               sp_c, sp_h, sp_w, FP64)
    return tl.where(mask, (a + b + c) / 3, 0.0)


@triton.jit
def _hidden(f, w1_ptr, b1_ptr, j, chan, c_mask, C, FP64: tl.constexpr):
    """Hidden unit j of the decoder for every ray: softplus(f . fc1_weight[j] + fc1_bias[j])."""
    w = to_compute(tl.load(w1_ptr + j * C + chan, mask=c_mask, other=0), FP64)
    return _softplus(tl.sum(f * w[None, :], axis=1) + tl.load(b1_ptr + j))


@triton.jit
def _density(f, w1_ptr, b1_ptr, w2t_ptr, b2_ptr, chan, c_mask, C, HIDDEN, OUTPUTS,
             BLOCK_R: tl.constexpr, FP64: tl.constexpr):
    """The decoder's raw density (output 0) alone, [BLOCK_R]."""
    acc = tl.zeros((BLOCK_R,), f.dtype)
    for j in range(HIDDEN):
        acc += _hidden(f, w1_ptr, b1_ptr, j, chan, c_mask, C, FP64) * tl.load(w2t_ptr + j * OUTPUTS)
    return acc + tl.load(b2_ptr)


@triton.jit
def _colors(f, w1_ptr, b1_ptr, w2t_ptr, b2_ptr, chan, c_mask, och, o_mask, C, HIDDEN, OUTPUTS,
            BLOCK_R: tl.constexpr, BLOCK_O: tl.constexpr, FP64: tl.constexpr):
    """The decoder's activated colors (outputs 1..), [BLOCK_R, BLOCK_O]."""
    acc = tl.zeros((BLOCK_R, BLOCK_O), f.dtype)
    for j in range(HIDDEN):
        h = _hidden(f, w1_ptr, b1_ptr, j, chan, c_mask, C, FP64)
        w = tl.load(w2t_ptr + j * OUTPUTS + 1 + och, mask=o_mask, other=0)
        acc += h[:, None] * w[None, :]
    x = acc + tl.load(b2_ptr + 1 + och, mask=o_mask, other=0)[None, :]
    return (1 / (1 + tl.exp(-x))) * (1 + 2 * _PAD) - _PAD


@triton.jit
def _next_sample(t, done, cols, S):
    """The first not yet walked sample in torch.sort's (stable, NaN last) order of depths t."""
    nan = t != t
    live = (cols[None, :] < S) & (done == 0)
    finite_live = live & ~nan
    smallest = tl.min(tl.where(finite_live, t, float("inf")), axis=1)
    any_finite = tl.sum(finite_live.to(tl.int32), axis=1) > 0
    pick = tl.where(any_finite[:, None], finite_live & (t == smallest[:, None]), live & nan)
    return tl.min(tl.where(pick, cols[None, :], 2147483647), axis=1)


@triton.jit(do_not_specialize=["D", "DI"])
def render_triplanes_forward_kernel(
        planes_ptr, origins_ptr, directions_ptr, spans_ptr, seed_ptr, w1_ptr, b1_ptr, w2t_ptr, b2_ptr,
        rgb_ptr, depth_ptr, wsum_ptr, ranges_ptr,
        RAYS, R, C, H, W, HIDDEN, OUTPUTS, D, DI, sp_n, sp_p, sp_c, sp_h, sp_w,
        scale_bits, start_bits, end_bits, spacing_bits, inv_steps_bits, inv_start_bits, inv_end_bits,
        AX0: tl.constexpr, AX1: tl.constexpr, AX2: tl.constexpr, AX3: tl.constexpr, AX4: tl.constexpr,
        AX5: tl.constexpr, AUTO: tl.constexpr, DISPARITY: tl.constexpr, WHITE_BACK: tl.constexpr,
        STOCHASTIC: tl.constexpr, HAS_FINE: tl.constexpr, FP64: tl.constexpr,
        BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_O: tl.constexpr):
    ray = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    r_mask = ray < RAYS
    item_base = (ray // R) * sp_n
    chan = tl.arange(0, BLOCK_C)
    c_mask = chan < C
    mask = r_mask[:, None] & c_mask[None, :]
    och = tl.arange(0, BLOCK_O)
    o_mask = och < OUTPUTS - 1
    cols = tl.arange(0, BLOCK_S)
    S = D + DI

    ox = tl.load(origins_ptr + ray * 3, mask=r_mask, other=0)
    oy = tl.load(origins_ptr + ray * 3 + 1, mask=r_mask, other=0)
    oz = tl.load(origins_ptr + ray * 3 + 2, mask=r_mask, other=0)
    dx = tl.load(directions_ptr + ray * 3, mask=r_mask, other=0)
    dy = tl.load(directions_ptr + ray * 3 + 1, mask=r_mask, other=0)
    dz = tl.load(directions_ptr + ray * 3 + 2, mask=r_mask, other=0)
    scale = _const(scale_bits, FP64)
    zero = tl.zeros((BLOCK_R,), origins_ptr.dtype.element_ty)
    if STOCHASTIC:
        seed = tl.load(seed_ptr)
        k0 = (seed & 0xFFFFFFFF).to(tl.uint32)
        k1 = (seed >> 32).to(tl.uint32)
    else:
        k0 = 0
        k1 = 0

    # The coarse depths' span (per ray for 'auto', computed beforehand).
    if AUTO:
        start = tl.load(spans_ptr + ray * 2, mask=r_mask, other=0)
        length = tl.load(spans_ptr + ray * 2 + 1, mask=r_mask, other=1) - start
        step_len = length / (D - 1)
    else:
        start = zero + _const(start_bits, FP64)
        end = zero + _const(end_bits, FP64)
        spacing = _const(spacing_bits, FP64)

    t = tl.zeros((BLOCK_R, BLOCK_S), ox.dtype)
    sigma = tl.zeros((BLOCK_R, BLOCK_S), ox.dtype)
    weights = tl.zeros((BLOCK_R, BLOCK_S), ox.dtype)

    # Coarse pass: densities only; the coarse walk's interval weights as they come.
    trans = zero + 1
    t_prev = zero
    s_prev = zero
    for k in range(D):
        if STOCHASTIC:
            jitter = _uniform(k0, k1, ray, 0, k, FP64).to(ox.dtype)
        else:
            jitter = zero
        if AUTO:
            tk = (start + ((zero + k) / (zero + (D - 1))) * length) + jitter * step_len
        elif DISPARITY:
            s = _linspace_at(zero, zero + 1, D, k) + jitter * _const(inv_steps_bits, FP64)
            tk = 1 / (_const(inv_start_bits, FP64) * (1 - s) + _const(inv_end_bits, FP64) * s)
        else:
            tk = _linspace_at(start, end, D, k) + jitter * spacing
        f = _features(planes_ptr, item_base, chan, mask, ox, oy, oz, dx, dy, dz, tk, scale, W, H,
                      sp_p, sp_c, sp_h, sp_w, AX0, AX1, AX2, AX3, AX4, AX5, FP64)
        sk = _density(f, w1_ptr, b1_ptr, w2t_ptr, b2_ptr, chan, c_mask, C, HIDDEN, OUTPUTS, BLOCK_R, FP64)
        t = _put(t, cols, k, tk)
        sigma = _put(sigma, cols, k, sk)
        if HAS_FINE:
            _, _, _, _, alpha = _interval(s_prev, sk, t_prev, tk)
            w = alpha * trans
            trans_next = trans * ((1 - alpha) + _FLOOR)
            weights = _put(weights, cols, k - 1, w)  # no column -1: nothing for k = 0
            trans = tl.where((zero + k) == 0, trans, trans_next)
        t_prev = tk
        s_prev = sk

    if HAS_FINE:
        # sample_pdf's cdf over the D - 3 inner smoothed weights of the D - 1 coarse weights.
        K = D - 3
        pdf = tl.zeros((BLOCK_R, BLOCK_S), ox.dtype)
        total = zero
        w_a = _col(weights, cols, 0)
        w_b = _col(weights, cols, 1)
        for j in range(K):
            w_c = _col(weights, cols, j + 2)
            smoothed = (_nan_max(w_a, w_b) + _nan_max(w_b, w_c)) / 2 + 0.01
            pw = smoothed + _PDF_EPS
            pdf = _put(pdf, cols, j + 1, pw)
            total += pw
            w_a = w_b
            w_b = w_c
        cdf = tl.zeros((BLOCK_R, BLOCK_S), ox.dtype)
        c = zero
        for j in range(K):
            c = c + _col(pdf, cols, j + 1) / total
            cdf = _put(cdf, cols, j + 1, c)
        in_cdf = cols[None, :] <= K
        # Fine pass: inverse-cdf depths (bins: coarse midpoints indexed with cdf indices).
        for j in range(DI):
            if STOCHASTIC:
                u = _uniform(k0, k1, ray, 1, j, FP64).to(ox.dtype)
            else:
                u = _linspace_at(zero, zero + 1, DI, j)
            above = tl.sum((in_cdf & (cdf <= u[:, None])).to(tl.int32), axis=1)  # searchsorted(right=True)
            below = tl.maximum(above - 1, 0)
            above = tl.minimum(above, K)
            cdf_below = _col_at(cdf, cols, below)
            cdf_above = _col_at(cdf, cols, above)
            bin_below = (_col_at(t, cols, below) + _col_at(t, cols, below + 1)) / 2
            bin_above = (_col_at(t, cols, above) + _col_at(t, cols, above + 1)) / 2
            denom = cdf_above - cdf_below
            denom = tl.where(denom < _PDF_EPS, 1.0, denom)
            tf = bin_below + (u - cdf_below) / denom * (bin_above - bin_below)
            f = _features(planes_ptr, item_base, chan, mask, ox, oy, oz, dx, dy, dz, tf, scale, W, H,
                          sp_p, sp_c, sp_h, sp_w, AX0, AX1, AX2, AX3, AX4, AX5, FP64)
            sf = _density(f, w1_ptr, b1_ptr, w2t_ptr, b2_ptr, chan, c_mask, C, HIDDEN, OUTPUTS, BLOCK_R, FP64)
            t = _put(t, cols, D + j, tf)
            sigma = _put(sigma, cols, D + j, sf)

    # Final walk in depth order (torch.sort's; the coarse samples alone are not sorted, as in
    # EG3D), re-decoding each sample's colors.
    done = tl.zeros((BLOCK_R, BLOCK_S), tl.int32)
    if HAS_FINE:
        b = _next_sample(t, done, cols, S)
        done = tl.where(cols[None, :] == b[:, None], 1, done)
    else:
        b = tl.zeros((BLOCK_R,), tl.int32)
    t_prev = _col_at(t, cols, b)
    s_prev = _col_at(sigma, cols, b)
    f = _features(planes_ptr, item_base, chan, mask, ox, oy, oz, dx, dy, dz, t_prev, scale, W, H,
                  sp_p, sp_c, sp_h, sp_w, AX0, AX1, AX2, AX3, AX4, AX5, FP64)
    c_prev = _colors(f, w1_ptr, b1_ptr, w2t_ptr, b2_ptr, chan, c_mask, och, o_mask, C, HIDDEN, OUTPUTS,
                     BLOCK_R, BLOCK_O, FP64)
    acc = tl.zeros((BLOCK_R, BLOCK_O), c_prev.dtype)
    trans = zero + 1
    w_sum = zero
    d_sum = zero
    for k in range(1, S):
        if HAS_FINE:
            b = _next_sample(t, done, cols, S)
            done = tl.where(cols[None, :] == b[:, None], 1, done)
        else:
            b = tl.zeros((BLOCK_R,), tl.int32) + k
        tk = _col_at(t, cols, b)
        sk = _col_at(sigma, cols, b)
        f = _features(planes_ptr, item_base, chan, mask, ox, oy, oz, dx, dy, dz, tk, scale, W, H,
                      sp_p, sp_c, sp_h, sp_w, AX0, AX1, AX2, AX3, AX4, AX5, FP64)
        ck = _colors(f, w1_ptr, b1_ptr, w2t_ptr, b2_ptr, chan, c_mask, och, o_mask, C, HIDDEN, OUTPUTS,
                     BLOCK_R, BLOCK_O, FP64)
        _, _, _, _, alpha = _interval(s_prev, sk, t_prev, tk)
        w = alpha * trans
        trans = trans * ((1 - alpha) + _FLOOR)
        w_sum += w
        d_sum += w * ((t_prev + tk) / 2)
        acc += w[:, None] * ((c_prev + ck) / 2)
        t_prev = tk
        s_prev = sk
        c_prev = ck

    if WHITE_BACK:
        acc += (1 - w_sum)[:, None]
    out_mask = r_mask[:, None] & o_mask[None, :]
    tl.store(rgb_ptr + ray[:, None] * (OUTPUTS - 1) + och[None, :], (acc * 2 - 1).to(rgb_ptr.dtype.element_ty),
             mask=out_mask)
    tl.store(depth_ptr + ray, (d_sum / w_sum).to(depth_ptr.dtype.element_ty), mask=r_mask)
    tl.store(wsum_ptr + ray, w_sum.to(wsum_ptr.dtype.element_ty), mask=r_mask)
    # The ray's smallest and largest sample depth (NaN wins), for the batch-wide clamp.
    live = cols[None, :] < S
    nan = tl.sum((live & (t != t)).to(tl.int32), axis=1) > 0
    lo = tl.min(tl.where(live, t, float("inf")), axis=1)
    hi = tl.max(tl.where(live, t, float("-inf")), axis=1)
    tl.store(ranges_ptr + ray * 2, tl.where(nan, float("nan"), lo), mask=r_mask)
    tl.store(ranges_ptr + ray * 2 + 1, tl.where(nan, float("nan"), hi), mask=r_mask)


# --- launch ----------------------------------------------------------------------------------------

def _double_bits(value: float) -> int:
    """The IEEE bits of a double as a signed int64 (the kernel bitcasts them back)."""
    return struct.unpack("<q", struct.pack("<d", float(value)))[0]


def blocks(samples: int, channels: int, outputs: int) -> tuple[int, int, int, int]:
    """(BLOCK_R, BLOCK_S, BLOCK_C, BLOCK_O): rays per program bounded by the per-ray tiles."""
    block_s = triton.next_power_of_2(samples)
    block_c = triton.next_power_of_2(max(1, channels))
    block_o = triton.next_power_of_2(max(1, outputs - 1))
    block_r = max(1, min(16, 2048 // max(block_s, block_c, block_o)))
    return block_r, block_s, block_c, block_o


def forward(planes, fc1_weight, fc1_bias, fc2_wt, fc2_bias, origins, directions, spans, seed, rgb, depth,
            weight_total, ranges, depth_resolution, depth_resolution_importance, ray_start, ray_end, box_warp,
            white_back, disparity, auto_limits, axes):
    """Render [N, R] rays into rgb [N, R, C_out], depth [N, R, 1] (unclamped) and weight_total
    [N, R, 1], and each ray's (smallest, largest) sample depth into ranges [N * R, 2].

    fc1_weight [hidden, C] and fc2_wt [hidden, 1 + C_out] (the second layer transposed),
    biases, origins, directions [N, R, 3] and spans [N * R, 2] ('auto': each ray's coarse
    depth range, else unused) are dense in compute precision; planes have any strides;
    seed is an int64 tensor [1] or None (deterministic)."""
    n, r, _ = origins.shape
    _, _, c, h, w = planes.shape
    hidden, outputs = fc2_wt.shape
    d, di = depth_resolution, depth_resolution_importance
    rays = n * r
    if rays == 0:
        return
    block_r, block_s, block_c, block_o = blocks(d + di, c, outputs)
    ax = [int(a) for a in axes]
    consts = [2.0 / box_warp, ray_start, ray_end, (ray_end - ray_start) / (d - 1), 1.0 / (d - 1),
              1.0 / ray_start if ray_start else 0.0, 1.0 / ray_end if ray_end else 0.0]
    render_triplanes_forward_kernel[(triton.cdiv(rays, block_r),)](
        planes, origins, directions, spans, seed if seed is not None else spans, fc1_weight, fc1_bias, fc2_wt,
        fc2_bias, rgb, depth, weight_total, ranges,
        rays, r, c, h, w, hidden, outputs, d, di, *planes.stride(), *[_double_bits(v) for v in consts],
        AX0=ax[0], AX1=ax[1], AX2=ax[2], AX3=ax[3], AX4=ax[4], AX5=ax[5], AUTO=bool(auto_limits),
        DISPARITY=bool(disparity), WHITE_BACK=bool(white_back), STOCHASTIC=seed is not None, HAS_FINE=di > 0,
        FP64=origins.element_size() == 8, BLOCK_R=block_r, BLOCK_S=block_s, BLOCK_C=block_c, BLOCK_O=block_o)


def philox4x32_10(counter, key):
    """Philox4x32-10 of one counter (4 words) and key (2 words), on the CPU (tests)."""
    ctr = torch.tensor(counter, dtype=torch.int64).to(torch.uint32)
    k = torch.tensor(key, dtype=torch.int64).to(torch.uint32)
    out = torch.zeros(4, dtype=torch.uint32)
    philox_test_kernel[(1,)](ctr, k, out)
    return [int(v) for v in out.to(torch.int64)]
