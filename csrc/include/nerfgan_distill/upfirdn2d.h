// upfirdn2d: upsample (zero insertion), pad/crop, FIR filter, downsample, per channel,
// StyleGAN2-ADA semantics. The math of one output pixel is shared by the CPU and CUDA
// kernels; the launchers take raw pointers, sizes and strides (any layout, e.g. NHWC).
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>

#include "nerfgan_distill/common.h"

namespace ngd {
namespace upfirdn2d {

struct Params {
  const void* x = nullptr;  // [N, C, H, W] with strides sx_*
  const void* f = nullptr;  // [fh, fw] correlation taps, gain and flip applied, dense,
                            // in the compute type (double for float64 tensors, else float)
  void* out = nullptr;      // [N, C, out_h, out_w] with strides so_*
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t out_h = 0, out_w = 0;
  int64_t sx_n = 0, sx_c = 0, sx_h = 0, sx_w = 0;
  int64_t so_n = 0, so_c = 0, so_h = 0, so_w = 0;
  int up_x = 1, up_y = 1, down_x = 1, down_y = 1;
  int pad_x0 = 0, pad_y0 = 0;  // pad_x1/pad_y1 only shape the output (out_w, out_h)
  int fh = 1, fw = 1;
  int dtype = kFloat32;
  int threads = 1;  // CPU only
};

NGD_ISA_BEGIN

// The first tap k >= 0 with (start + k) divisible by `up`: taps in between hit the
// inserted zeros, so only every up-th tap from there touches a real sample.
NGD_HD int first_live_tap(int64_t start, int up) {
  const int64_t r = start % up;
  return int((r == 0) ? 0 : (r < 0 ? -r : up - r));
}

// out[n, c, oy, ox] = sum_{ky, kx} f[ky, kx] * X(oy * down_y + ky - pad_y0, ox * down_x + kx - pad_x0)
// where X(u, v) is x[u / up_y, v / up_x] when both divide evenly and fall inside, else 0.
// `load(offset)` reads x at an element offset and returns the compute type T.
template <typename T, typename Load>
NGD_HD T output_pixel(const Params& p, const T* f, int64_t base, int64_t oy, int64_t ox, Load load) {
  const int64_t uy0 = oy * p.down_y - p.pad_y0;
  const int64_t ux0 = ox * p.down_x - p.pad_x0;
  const int ky0 = first_live_tap(uy0, p.up_y);
  const int kx0 = first_live_tap(ux0, p.up_x);
  T acc = T(0);
  for (int ky = ky0; ky < p.fh; ky += p.up_y) {
    const int64_t iy = (uy0 + ky) / p.up_y;
    if (iy < 0 || iy >= p.h) continue;
    const int64_t row = base + iy * p.sx_h;
    for (int kx = kx0; kx < p.fw; kx += p.up_x) {
      const int64_t ix = (ux0 + kx) / p.up_x;
      if (ix < 0 || ix >= p.w) continue;
      acc += f[ky * p.fw + kx] * load(row + ix * p.sx_w);
    }
  }
  return acc;
}

// Along one axis of a pass out[o] = sum_k f[k] X(o * down + k - pad0) (X: the input with up-1 zeros
// inserted), the outputs that tap k reads a real sample for: outputs ox0 + j * ox_step read input
// ix0 + j * ix_step, j < count. The CPU loops run tap-outer over these spans, so the inner loops
// have constant strides and skip the inserted zeros.
struct ColumnSpan {
  int64_t ox0 = 0, ox_step = 1, ix0 = 0, ix_step = 1, count = 0;
};

inline ColumnSpan column_span(int64_t up, int64_t down, int64_t pad0, int64_t in_size, int64_t out_size, int k) {
  const auto ceil_div = [](int64_t a, int64_t b) { return a <= 0 ? int64_t(0) : (a + b - 1) / b; };
  ColumnSpan span;
  int64_t first = -1;  // (o * down + k - pad0) % up repeats with a period <= up
  for (int64_t o = 0; o < std::min<int64_t>(up, out_size); ++o) {
    if ((o * down + k - pad0) % up == 0) { first = o; break; }
  }
  if (first < 0) return span;
  const int64_t g = std::gcd(up, down);
  span.ox_step = up / g;
  span.ix_step = down / g;
  const int64_t i_first = (first * down + k - pad0) / up;  // exact division
  const int64_t j0 = i_first >= 0 ? 0 : ceil_div(-i_first, span.ix_step);
  const int64_t j1 = std::min(ceil_div(in_size - i_first, span.ix_step), ceil_div(out_size - first, span.ox_step));
  span.count = std::max<int64_t>(0, j1 - j0);
  span.ox0 = first + j0 * span.ox_step;
  span.ix0 = i_first + j0 * span.ix_step;
  return span;
}

// The CPU loops of one ISA (csrc/cpu/upfirdn2d.cpp, compiled once per ISA).
void forward_cpu_isa(const Params& p);

NGD_ISA_END

void forward_cpu(const Params& p);
void forward_cuda(const Params& p, int device, std::uintptr_t stream);

}  // namespace upfirdn2d
}  // namespace ngd
