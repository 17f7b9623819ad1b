// sample_triplanes on the CPU. Forward and the coordinate gradient: one point per
// iteration, all planes and channels. Planes gradient: each thread owns whole
// (batch, plane, channel block) slices and walks every point into them, so there are
// no races, no atomics, and the result does not depend on the thread count.
// Compiled once per CPU ISA (NGD_ISA); csrc/cpu/cpu_dispatch.cpp picks one at run time.
#include <algorithm>
#include <limits>
#include <vector>

#include "nerfgan_distill/host_half.h"
#include "nerfgan_distill/sample_triplanes.h"

namespace ngd {
namespace sample_triplanes {
NGD_ISA_BEGIN
namespace {

constexpr int64_t kChannelBlock = 4;  // channels per planes-gradient task

constexpr int64_t kPointBlock = 64;  // points per forward task

// One task: kPointBlock points on one plane. Channels-last planes are read a point at a
// time (each tap's channels are contiguous); other layouts a channel at a time across the
// block, so the reads stay within one channel plane instead of striding over all of them.
template <typename S, typename T>
void forward(const Params& p) {
  const S* planes = static_cast<const S*>(p.planes);
  const T* coords = static_cast<const T*>(p.coords);
  S* out = static_cast<S*>(p.out);
  const std::vector<S> zeros(p.c, StoreAs<S>::from(T(0)));
  const int64_t blocks = (p.m + kPointBlock - 1) / kPointBlock;
  const int64_t tasks = p.n * 3 * blocks;
#pragma omp parallel for num_threads(p.threads) schedule(static) if (p.n * p.m * p.c >= 4096)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t block = task % blocks, plane = (task / blocks) % 3, n = task / (3 * blocks);
    const int64_t m0 = block * kPointBlock, count = std::min(kPointBlock, p.m - m0);
    const S* plane_base = planes + n * p.sp_n + plane * p.sp_p;
    S* dst = out + ((n * 3 + plane) * p.m + m0) * p.c;
    TapRows<S> rows[kPointBlock];
    T weights[kPointBlock][4];
    bool defined[kPointBlock];
    for (int64_t j = 0; j < count; ++j) {
      const Taps<T> taps = point_taps(p, coords, n, m0 + j, int(plane));
      defined[j] = taps.finite;
      tap_weights(taps, weights[j]);
      rows[j] = tap_rows(taps, plane_base, p, zeros.data());
    }
    for (int64_t j = 0; j < count; ++j) {
      const TapRows<S>& r = rows[j];
      const T* w = weights[j];
      S* d = dst + j * p.c;
      if (!defined[j]) {
        for (int64_t ch = 0; ch < p.c; ++ch) d[ch] = StoreAs<S>::from(std::numeric_limits<T>::quiet_NaN());
      } else if (r.unit_stride) {
        const S *r0 = r.row[0], *r1 = r.row[1], *r2 = r.row[2], *r3 = r.row[3];
        for (int64_t ch = 0; ch < p.c; ++ch)
          d[ch] = StoreAs<S>::from(w[0] * load_as<T>(r0[ch]) + w[1] * load_as<T>(r1[ch]) +
                                   w[2] * load_as<T>(r2[ch]) + w[3] * load_as<T>(r3[ch]));
      }
    }
    if (p.sp_c == 1) continue;
    for (int64_t ch = 0; ch < p.c; ++ch) {
      for (int64_t j = 0; j < count; ++j) {
        const TapRows<S>& r = rows[j];
        if (!defined[j] || r.unit_stride) continue;
        const T* w = weights[j];
        dst[j * p.c + ch] = StoreAs<S>::from(
            w[0] * load_as<T>(r.row[0][ch * r.stride[0]]) + w[1] * load_as<T>(r.row[1][ch * r.stride[1]]) +
            w[2] * load_as<T>(r.row[2][ch * r.stride[2]]) + w[3] * load_as<T>(r.row[3][ch * r.stride[3]]));
      }
    }
  }
}

template <typename S, typename T>
void coords_grad(const Params& p) {
  const S* planes = static_cast<const S*>(p.planes);
  const T* coords = static_cast<const T*>(p.coords);
  const S* grad_out = static_cast<const S*>(p.grad_out);
  T* grad = static_cast<T*>(p.grad_coords);
  const std::vector<S> zeros(p.c, StoreAs<S>::from(T(0)));
  const int64_t points = p.n * p.m;
#pragma omp parallel for num_threads(p.threads) schedule(static) if (points * p.c >= 4096)
  for (int64_t i = 0; i < points; ++i) {
    const int64_t n = i / p.m, m = i % p.m;
    T g[3] = {T(0), T(0), T(0)};
    for (int plane = 0; plane < 3; ++plane) {
      const Taps<T> taps = point_taps(p, coords, n, m, plane);
      if (!taps.finite) {
        add_coord_grad(p, plane, false, T(0), T(0), g);
        continue;
      }
      const S* go = grad_out + ((n * 3 + plane) * p.m + m) * p.c;
      const TapRows<S> r = tap_rows(taps, planes + n * p.sp_n + plane * p.sp_p, p, zeros.data());
      T sum_x = T(0), sum_y = T(0);
      for (int64_t ch = 0; ch < p.c; ++ch) {
        T v[4], d_ix, d_iy;
        for (int k = 0; k < 4; ++k) v[k] = load_as<T>(r.row[k][ch * r.stride[k]]);
        blend_grad(taps, v, d_ix, d_iy);
        const T gy = load_as<T>(go[ch]);
        sum_x += d_ix * gy;
        sum_y += d_iy * gy;
      }
      add_coord_grad(p, plane, true, sum_x, sum_y, g);
    }
    for (int a = 0; a < 3; ++a) grad[i * 3 + a] = g[a];
  }
}

template <typename S, typename T>
void planes_grad(const Params& p) {
  const T* coords = static_cast<const T*>(p.coords);
  const S* grad_out = static_cast<const S*>(p.grad_out);
  T* grad = static_cast<T*>(p.grad_planes);
  const int64_t blocks = (p.c + kChannelBlock - 1) / kChannelBlock;
  const int64_t tasks = p.n * 3 * blocks;
#pragma omp parallel for num_threads(p.threads) schedule(dynamic, 1) if (p.m * p.c >= 4096)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t block = task % blocks, plane = (task / blocks) % 3, n = task / (3 * blocks);
    const int64_t c0 = block * kChannelBlock, c1 = std::min(p.c, c0 + kChannelBlock);
    T* slice = grad + n * p.sg_n + plane * p.sg_p;
    for (int64_t m = 0; m < p.m; ++m) {
      const Taps<T> t = point_taps(p, coords, n, m, int(plane));
      if (!t.finite) continue;
      const S* go = grad_out + ((n * 3 + plane) * p.m + m) * p.c;
      const int64_t row0 = t.y0 * p.sg_h, row1 = row0 + p.sg_h;
      const int64_t col0 = t.x0 * p.sg_w, col1 = col0 + p.sg_w;
      for (int64_t ch = c0; ch < c1; ++ch) {
        const T gy = load_as<T>(go[ch]);
        T* g = slice + ch * p.sg_c;
        if (t.valid_y0 && t.valid_x0) g[row0 + col0] += t.wy0 * t.wx0 * gy;
        if (t.valid_y0 && t.valid_x1) g[row0 + col1] += t.wy0 * t.wx1 * gy;
        if (t.valid_y1 && t.valid_x0) g[row1 + col0] += t.wy1 * t.wx0 * gy;
        if (t.valid_y1 && t.valid_x1) g[row1 + col1] += t.wy1 * t.wx1 * gy;
      }
    }
  }
}

}  // namespace

void forward_cpu_isa(const Params& p) {
  with_host_dtype(p.dtype, "sample_triplanes_cpu", [&](auto s, auto t) { forward<decltype(s), decltype(t)>(p); });
}

void backward_cpu_isa(const Params& p) {
  with_host_dtype(p.dtype, "sample_triplanes_cpu", [&](auto s, auto t) {
    if (p.grad_coords) coords_grad<decltype(s), decltype(t)>(p);
    if (p.grad_planes) planes_grad<decltype(s), decltype(t)>(p);
  });
}

NGD_ISA_END
}  // namespace sample_triplanes
}  // namespace ngd
