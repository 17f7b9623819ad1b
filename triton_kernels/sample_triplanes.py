"""sample_triplanes in Triton: one program per (batch, block of points), the three
planes unrolled, a [points, channels] tile per plane.

Same contract as csrc/include/nerfgan_distill/sample_triplanes.h: planes in any layout
(strides given), coords [N, M, 3] dense in compute precision, out and grad_out
[N, 3, M, C] dense, grad_planes zeroed in compute precision (own strides, filled with
atomics), grad_coords [N, M, 3] dense and written whole. grid_sample conventions:
bilinear, zero padding, align_corners=False. Infinite points read zero; a NaN
coordinate makes the planes that read it NaN (and the gradient of both their axes).
"""
from __future__ import annotations

import struct

import triton
import triton.language as tl

from ._common import to_compute


@triton.jit
def _pick(c0, c1, c2, AXIS: tl.constexpr):
    """Coordinate axis AXIS of the points."""
    if AXIS == 0:
        v = c0
    elif AXIS == 1:
        v = c1
    else:
        v = c2
    return v


@triton.jit
def _add_to_axis(g0, g1, g2, v, AXIS: tl.constexpr):
    """(g0, g1, g2) with v added to axis AXIS."""
    if AXIS == 0:
        g0 += v
    elif AXIS == 1:
        g1 += v
    else:
        g2 += v
    return g0, g1, g2


@triton.jit
def _clamp_grid(g):
    """Grid coordinates beyond +-3 are far outside the plane (every tap reads zero): clamping
    them there lets infinite or huge points sample zero without overflowing the pixel index.
    NaN passes through."""
    return tl.where(g < -3, -3.0, tl.where(g > 3, 3.0, g))


@triton.jit
def _locate(gx, gy, W, H):
    """Top-left tap (x0, y0), bilinear weights and tap validity of grid points (gx, gy);
    `ok` is false at NaN points."""
    ix = ((_clamp_grid(gx) + 1) * W - 1) / 2
    iy = ((_clamp_grid(gy) + 1) * H - 1) / 2
    ok = (ix == ix) & (iy == iy)
    ix = tl.where(ok, ix, 0.0)
    iy = tl.where(ok, iy, 0.0)
    fx = tl.floor(ix)
    fy = tl.floor(iy)
    wx1 = ix - fx
    wx0 = (fx + 1) - ix
    wy1 = iy - fy
    wy0 = (fy + 1) - iy
    x0 = fx.to(tl.int64)
    y0 = fy.to(tl.int64)
    vx0 = (x0 >= 0) & (x0 < W)
    vx1 = (x0 + 1 >= 0) & (x0 + 1 < W)
    vy0 = (y0 >= 0) & (y0 < H)
    vy1 = (y0 + 1 >= 0) & (y0 + 1 < H)
    return x0, y0, wx0, wx1, wy0, wy1, ok, vx0, vx1, vy0, vy1


@triton.jit
def _gather(ptr, base, chan, x0, y0, sh, sw, vx0, vx1, vy0, vy1, mask, FP64: tl.constexpr):
    """The four [points, channels] tap tiles (zero where a tap is outside the plane)."""
    row0 = base + y0 * sh
    row1 = row0 + sh
    col0 = x0 * sw
    col1 = col0 + sw
    v00 = tl.load(ptr + (row0 + col0)[:, None] + chan[None, :], mask=mask & (vy0 & vx0)[:, None], other=0)
    v01 = tl.load(ptr + (row0 + col1)[:, None] + chan[None, :], mask=mask & (vy0 & vx1)[:, None], other=0)
    v10 = tl.load(ptr + (row1 + col0)[:, None] + chan[None, :], mask=mask & (vy1 & vx0)[:, None], other=0)
    v11 = tl.load(ptr + (row1 + col1)[:, None] + chan[None, :], mask=mask & (vy1 & vx1)[:, None], other=0)
    return to_compute(v00, FP64), to_compute(v01, FP64), to_compute(v10, FP64), to_compute(v11, FP64)


@triton.jit
def _points(coords_ptr, scale_bits, M, BLOCK_M: tl.constexpr, FP64: tl.constexpr):
    """This program's batch index, point indices and mask, scaled coordinates."""
    n = tl.program_id(1).to(tl.int64)
    m = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = m < M
    # The scale comes as the bits of a double: a float argument would be rounded to fp32.
    scale = to_compute(scale_bits.to(tl.float64, bitcast=True), FP64)
    xyz = coords_ptr + (n * M + m) * 3
    c0 = tl.load(xyz, mask=m_mask, other=0) * scale
    c1 = tl.load(xyz + 1, mask=m_mask, other=0) * scale
    c2 = tl.load(xyz + 2, mask=m_mask, other=0) * scale
    return n, m, m_mask, scale, c0, c1, c2


@triton.jit
def _forward_plane(planes_ptr, out_ptr, n, m, mask, chan, c0, c1, c2, M, C, H, W,
                   sp_n, sp_p, sp_c, sp_h, sp_w,
                   PLANE: tl.constexpr, AX_U: tl.constexpr, AX_V: tl.constexpr, FP64: tl.constexpr):
    x0, y0, wx0, wx1, wy0, wy1, ok, vx0, vx1, vy0, vy1 = _locate(
        _pick(c0, c1, c2, AX_U), _pick(c0, c1, c2, AX_V), W, H)
    v00, v01, v10, v11 = _gather(planes_ptr, n * sp_n + PLANE * sp_p, chan * sp_c, x0, y0, sp_h, sp_w,
                                 vx0, vx1, vy0, vy1, mask, FP64)
    value = wy0[:, None] * (wx0[:, None] * v00 + wx1[:, None] * v01) + \
        wy1[:, None] * (wx0[:, None] * v10 + wx1[:, None] * v11)
    value = tl.where(ok[:, None], value, float("nan"))
    offs = ((n * 3 + PLANE) * M + m)[:, None] * C + chan[None, :]
    tl.store(out_ptr + offs, value.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def sample_triplanes_forward_kernel(planes_ptr, coords_ptr, out_ptr, M, C, H, W,
                                sp_n, sp_p, sp_c, sp_h, sp_w, scale_bits,
                                AX0: tl.constexpr, AX1: tl.constexpr, AX2: tl.constexpr,
                                AX3: tl.constexpr, AX4: tl.constexpr, AX5: tl.constexpr,
                                FP64: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    n, m, m_mask, scale, c0, c1, c2 = _points(coords_ptr, scale_bits, M, BLOCK_M, FP64)
    chan = tl.arange(0, BLOCK_C)
    mask = m_mask[:, None] & (chan < C)[None, :]
    _forward_plane(planes_ptr, out_ptr, n, m, mask, chan, c0, c1, c2, M, C, H, W,
                   sp_n, sp_p, sp_c, sp_h, sp_w, 0, AX0, AX1, FP64)
    _forward_plane(planes_ptr, out_ptr, n, m, mask, chan, c0, c1, c2, M, C, H, W,
                   sp_n, sp_p, sp_c, sp_h, sp_w, 1, AX2, AX3, FP64)
    _forward_plane(planes_ptr, out_ptr, n, m, mask, chan, c0, c1, c2, M, C, H, W,
                   sp_n, sp_p, sp_c, sp_h, sp_w, 2, AX4, AX5, FP64)


@triton.jit
def _backward_plane(planes_ptr, grad_out_ptr, gp_ptr, n, m, mask, chan, c0, c1, c2, scale, M, C, H, W,
                    sp_n, sp_p, sp_c, sp_h, sp_w, sg_n, sg_p, sg_c, sg_h, sg_w,
                    PLANE: tl.constexpr, AX_U: tl.constexpr, AX_V: tl.constexpr,
                    HAS_GRAD_PLANES: tl.constexpr, HAS_GRAD_COORDS: tl.constexpr, FP64: tl.constexpr):
    """Scatter this plane's gradient; return the gradient of the two coordinates it reads."""
    x0, y0, wx0, wx1, wy0, wy1, ok, vx0, vx1, vy0, vy1 = _locate(
        _pick(c0, c1, c2, AX_U), _pick(c0, c1, c2, AX_V), W, H)
    offs = ((n * 3 + PLANE) * M + m)[:, None] * C + chan[None, :]
    g = to_compute(tl.load(grad_out_ptr + offs, mask=mask, other=0), FP64)
    if HAS_GRAD_PLANES:
        live = mask & ok[:, None]  # a NaN point gives nothing to the planes
        row0 = n * sg_n + PLANE * sg_p + y0 * sg_h
        row1 = row0 + sg_h
        col0 = x0 * sg_w
        col1 = col0 + sg_w
        chan_g = (chan * sg_c)[None, :]
        tl.atomic_add(gp_ptr + (row0 + col0)[:, None] + chan_g, (wy0 * wx0)[:, None] * g,
                      mask=live & (vy0 & vx0)[:, None], sem="relaxed")
        tl.atomic_add(gp_ptr + (row0 + col1)[:, None] + chan_g, (wy0 * wx1)[:, None] * g,
                      mask=live & (vy0 & vx1)[:, None], sem="relaxed")
        tl.atomic_add(gp_ptr + (row1 + col0)[:, None] + chan_g, (wy1 * wx0)[:, None] * g,
                      mask=live & (vy1 & vx0)[:, None], sem="relaxed")
        tl.atomic_add(gp_ptr + (row1 + col1)[:, None] + chan_g, (wy1 * wx1)[:, None] * g,
                      mask=live & (vy1 & vx1)[:, None], sem="relaxed")
    du = tl.zeros_like(wx0)
    dv = tl.zeros_like(wx0)
    if HAS_GRAD_COORDS:
        v00, v01, v10, v11 = _gather(planes_ptr, n * sp_n + PLANE * sp_p, chan * sp_c, x0, y0, sp_h, sp_w,
                                     vx0, vx1, vy0, vy1, mask, FP64)
        d_ix = wy0[:, None] * (v01 - v00) + wy1[:, None] * (v11 - v10)
        d_iy = wx0[:, None] * (v10 - v00) + wx1[:, None] * (v11 - v01)
        # d(ix)/d(coord) = W / 2 * scale (align_corners=False), likewise for iy.
        du = tl.sum(g * d_ix, axis=1) * (W * 0.5 * scale)
        dv = tl.sum(g * d_iy, axis=1) * (H * 0.5 * scale)
        du = tl.where(ok, du, float("nan"))
        dv = tl.where(ok, dv, float("nan"))
    return du, dv


@triton.jit
def sample_triplanes_backward_kernel(planes_ptr, coords_ptr, grad_out_ptr, gp_ptr, gc_ptr, M, C, H, W,
                                sp_n, sp_p, sp_c, sp_h, sp_w, sg_n, sg_p, sg_c, sg_h, sg_w, scale_bits,
                                AX0: tl.constexpr, AX1: tl.constexpr, AX2: tl.constexpr,
                                AX3: tl.constexpr, AX4: tl.constexpr, AX5: tl.constexpr,
                                HAS_GRAD_PLANES: tl.constexpr, HAS_GRAD_COORDS: tl.constexpr,
                                FP64: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    n, m, m_mask, scale, c0, c1, c2 = _points(coords_ptr, scale_bits, M, BLOCK_M, FP64)
    chan = tl.arange(0, BLOCK_C)
    mask = m_mask[:, None] & (chan < C)[None, :]
    # The coordinate gradient stays in registers over the planes (an axis can feed two
    # planes) and is stored once.
    g0 = tl.zeros_like(c0)
    g1 = tl.zeros_like(c0)
    g2 = tl.zeros_like(c0)
    du, dv = _backward_plane(planes_ptr, grad_out_ptr, gp_ptr, n, m, mask, chan, c0, c1, c2, scale, M, C, H, W,
                             sp_n, sp_p, sp_c, sp_h, sp_w, sg_n, sg_p, sg_c, sg_h, sg_w,
                             0, AX0, AX1, HAS_GRAD_PLANES, HAS_GRAD_COORDS, FP64)
    g0, g1, g2 = _add_to_axis(g0, g1, g2, du, AX0)
    g0, g1, g2 = _add_to_axis(g0, g1, g2, dv, AX1)
    du, dv = _backward_plane(planes_ptr, grad_out_ptr, gp_ptr, n, m, mask, chan, c0, c1, c2, scale, M, C, H, W,
                             sp_n, sp_p, sp_c, sp_h, sp_w, sg_n, sg_p, sg_c, sg_h, sg_w,
                             1, AX2, AX3, HAS_GRAD_PLANES, HAS_GRAD_COORDS, FP64)
    g0, g1, g2 = _add_to_axis(g0, g1, g2, du, AX2)
    g0, g1, g2 = _add_to_axis(g0, g1, g2, dv, AX3)
    du, dv = _backward_plane(planes_ptr, grad_out_ptr, gp_ptr, n, m, mask, chan, c0, c1, c2, scale, M, C, H, W,
                             sp_n, sp_p, sp_c, sp_h, sp_w, sg_n, sg_p, sg_c, sg_h, sg_w,
                             2, AX4, AX5, HAS_GRAD_PLANES, HAS_GRAD_COORDS, FP64)
    g0, g1, g2 = _add_to_axis(g0, g1, g2, du, AX4)
    g0, g1, g2 = _add_to_axis(g0, g1, g2, dv, AX5)
    if HAS_GRAD_COORDS:
        xyz = gc_ptr + (n * M + m) * 3
        tl.store(xyz, g0.to(gc_ptr.dtype.element_ty), mask=m_mask)
        tl.store(xyz + 1, g1.to(gc_ptr.dtype.element_ty), mask=m_mask)
        tl.store(xyz + 2, g2.to(gc_ptr.dtype.element_ty), mask=m_mask)


def _double_bits(value: float) -> int:
    """The IEEE bits of a double as a signed int64 (the kernels bitcast them back)."""
    return struct.unpack("<q", struct.pack("<d", float(value)))[0]


def _blocks(c: int) -> tuple[int, int]:
    block_c = max(1, triton.next_power_of_2(c))
    return max(1, min(64, 2048 // block_c)), block_c


def forward(planes, coords, out, scale, axes):
    """Sample planes [N, 3, C, H, W] at coords [N, M, 3] into out [N, 3, M, C];
    `scale` is 2 / box_warp, `axes` the (grid x, grid y) coordinate axis of each plane, flat."""
    n, _, c, h, w = planes.shape
    m = coords.shape[1]
    if n * m == 0:
        return
    block_m, block_c = _blocks(c)
    ax = [int(a) for a in axes]
    sample_triplanes_forward_kernel[(triton.cdiv(m, block_m), n)](
        planes, coords, out, m, c, h, w, *planes.stride(), _double_bits(scale),
        AX0=ax[0], AX1=ax[1], AX2=ax[2], AX3=ax[3], AX4=ax[4], AX5=ax[5],
        FP64=coords.element_size() == 8, BLOCK_M=block_m, BLOCK_C=block_c)


def backward(grad_out, planes, coords, scale, axes, grad_planes, grad_coords):
    """Add the planes gradient into grad_planes (zeroed, or None) and write the
    coordinate gradient into grad_coords (or None)."""
    n, _, c, h, w = planes.shape
    m = coords.shape[1]
    if n * m == 0 or (grad_planes is None and grad_coords is None):
        return
    block_m, block_c = _blocks(c)
    ax = [int(a) for a in axes]
    sample_triplanes_backward_kernel[(triton.cdiv(m, block_m), n)](
        planes, coords, grad_out, grad_planes if grad_planes is not None else coords,
        grad_coords if grad_coords is not None else coords, m, c, h, w, *planes.stride(),
        *(grad_planes.stride() if grad_planes is not None else (0,) * 5), _double_bits(scale),
        AX0=ax[0], AX1=ax[1], AX2=ax[2], AX3=ax[3], AX4=ax[4], AX5=ax[5],
        HAS_GRAD_PLANES=grad_planes is not None, HAS_GRAD_COORDS=grad_coords is not None,
        FP64=coords.element_size() == 8, BLOCK_M=block_m, BLOCK_C=block_c)
