"""upfirdn2d in Triton: one program per block of output pixels, taps unrolled.

Same contract as csrc/include/nerfgan_distill/upfirdn2d.h: x and out in any layout
(strides given), `taps` the dense [FH, FW] correlation filter with the gain applied.
"""
from __future__ import annotations

import triton
import triton.language as tl

from ._common import to_compute


@triton.jit
def _source_index(u, UP: tl.constexpr, size):
    """(index, valid) of the input sample at upsampled position u; invalid on inserted zeros.
    u is clamped before dividing so negative numbers never meet // and %."""
    uc = tl.where(u >= 0, u, 0)
    index = uc // UP
    return index, (u >= 0) & (uc % UP == 0) & (index < size)


@triton.jit
def upfirdn2d_forward_kernel(x_ptr, f_ptr, out_ptr, total, C, H, W, OH, OW,
                     sxn, sxc, sxh, sxw, son, soc, soh, sow, pad_x0, pad_y0,
                     UP_X: tl.constexpr, UP_Y: tl.constexpr, DOWN_X: tl.constexpr, DOWN_Y: tl.constexpr,
                     FH: tl.constexpr, FW: tl.constexpr, FP64: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < total
    ox = offs % OW
    rest = offs // OW
    oy = rest % OH
    rest = rest // OH
    c = rest % C
    n = rest // C
    base = n * sxn + c * sxc
    uy0 = oy * DOWN_Y - pad_y0
    ux0 = ox * DOWN_X - pad_x0
    acc = to_compute(tl.zeros([BLOCK], dtype=tl.float32), FP64)
    for ky in tl.static_range(FH):
        iy, valid_y = _source_index(uy0 + ky, UP_Y, H)
        for kx in tl.static_range(FW):
            ix, valid_x = _source_index(ux0 + kx, UP_X, W)
            tap = tl.load(f_ptr + ky * FW + kx)
            value = tl.load(x_ptr + base + iy * sxh + ix * sxw, mask=inside & valid_y & valid_x, other=0)
            acc += tap * to_compute(value, FP64)
    tl.store(out_ptr + n * son + c * soc + oy * soh + ox * sow, acc.to(out_ptr.dtype.element_ty), mask=inside)


_BLOCK = 256


def forward(x, taps, out, scaling, pad_x0, pad_y0):
    """Run the kernel; `scaling` is (up_x, up_y, down_x, down_y)."""
    total = out.numel()
    if total == 0:
        return
    up_x, up_y, down_x, down_y = scaling
    n, c, h, w = x.shape
    upfirdn2d_forward_kernel[(triton.cdiv(total, _BLOCK),)](
        x, taps, out, total, c, h, w, out.shape[2], out.shape[3], *x.stride(), *out.stride(), pad_x0, pad_y0,
        UP_X=up_x, UP_Y=up_y, DOWN_X=down_x, DOWN_Y=down_y, FH=taps.shape[0], FW=taps.shape[1],
        FP64=x.element_size() == 8, BLOCK=_BLOCK)
