// sample_triplanes: bilinear features of 3D points from three feature planes, with
// grid_sample's conventions (align_corners=False, zero padding). The per-point math
// (where the four taps are and their weights) is shared by the CPU and CUDA kernels.
#pragma once

#include <cstdint>

#include "nerfgan_distill/common.h"

namespace ngd {
namespace sample_triplanes {

struct Params {
  const void* planes = nullptr;   // [N, 3, C, H, W], strides sp_*, storage dtype
  const void* coords = nullptr;   // [N, M, 3] dense, compute type (double for fp64, else float)
  void* out = nullptr;            // forward: [N, 3, M, C] dense, storage dtype
  const void* grad_out = nullptr; // backward: [N, 3, M, C] dense, storage dtype
  void* grad_planes = nullptr;    // backward, optional: zeroed [N, 3, C, H, W], strides sg_*, compute type
  void* grad_coords = nullptr;    // backward, optional: [N, M, 3] dense, compute type (written, not added)
  int64_t n = 0, m = 0, c = 0, h = 0, w = 0;
  int64_t sp_n = 0, sp_p = 0, sp_c = 0, sp_h = 0, sp_w = 0;
  int64_t sg_n = 0, sg_p = 0, sg_c = 0, sg_h = 0, sg_w = 0;
  int axis_x[3] = {0, 0, 2}, axis_y[3] = {1, 2, 0};  // coordinate read as grid x / grid y, per plane
  double scale = 2.0;  // 2 / box_warp
  int dtype = kFloat32;
  int threads = 1;  // CPU only
};

NGD_ISA_BEGIN

// The four bilinear taps of one point on one plane: texel (x0, y0) and its right and
// lower neighbours, with weights wx0/wx1 along x and wy0/wy1 along y. A tap outside
// the plane has its valid_* flag cleared (it reads zero).
template <typename T>
struct Taps {
  int64_t x0, y0;
  T wx0, wx1, wy0, wy1;
  bool finite;  // false for a NaN coordinate: the sample is NaN
  bool valid_x0, valid_x1, valid_y0, valid_y1;
};

// Grid coordinates beyond +-3 are far outside the plane (every tap reads zero) and are
// clamped there, so infinite or huge coordinates sample zero without overflowing the
// pixel index. NaN passes through.
template <typename T>
NGD_HD T clamp_grid(T g) {
  return g < T(-3) ? T(-3) : (g > T(3) ? T(3) : g);
}

template <typename T>
NGD_HD Taps<T> locate(T gx, T gy, int64_t w, int64_t h) {
  Taps<T> t;
  T ix = ((clamp_grid(gx) + T(1)) * T(w) - T(1)) / T(2);
  T iy = ((clamp_grid(gy) + T(1)) * T(h) - T(1)) / T(2);
  t.finite = !ngd_isnan(ix) && !ngd_isnan(iy);
  ix = t.finite ? ix : T(0);
  iy = t.finite ? iy : T(0);
  const T fx = ngd_floor(ix), fy = ngd_floor(iy);
  t.x0 = int64_t(fx);
  t.y0 = int64_t(fy);
  t.wx1 = ix - fx;
  t.wx0 = (fx + T(1)) - ix;
  t.wy1 = iy - fy;
  t.wy0 = (fy + T(1)) - iy;
  t.valid_x0 = t.x0 >= 0 && t.x0 < w;
  t.valid_x1 = t.x0 + 1 >= 0 && t.x0 + 1 < w;
  t.valid_y0 = t.y0 >= 0 && t.y0 < h;
  t.valid_y1 = t.y0 + 1 >= 0 && t.y0 + 1 < h;
  return t;
}

// The taps of point (n, m) on plane p.
template <typename T>
NGD_HD Taps<T> point_taps(const Params& p, const T* coords, int64_t n, int64_t m, int plane) {
  const T* xyz = coords + (n * p.m + m) * 3;
  const T scale = T(p.scale);
  return locate(xyz[p.axis_x[plane]] * scale, xyz[p.axis_y[plane]] * scale, p.w, p.h);
}

// The four texel values of channel `ch` (zero where a tap is outside), via load(offset).
template <typename T, typename Load>
NGD_HD void gather(const Taps<T>& t, int64_t base, int64_t sh, int64_t sw, Load load, T v[4]) {
  const int64_t row0 = base + t.y0 * sh, row1 = row0 + sh;
  v[0] = (t.valid_y0 && t.valid_x0) ? load(row0 + t.x0 * sw) : T(0);
  v[1] = (t.valid_y0 && t.valid_x1) ? load(row0 + (t.x0 + 1) * sw) : T(0);
  v[2] = (t.valid_y1 && t.valid_x0) ? load(row1 + t.x0 * sw) : T(0);
  v[3] = (t.valid_y1 && t.valid_x1) ? load(row1 + (t.x0 + 1) * sw) : T(0);
}

// The weights of the four taps (top-left, top-right, bottom-left, bottom-right).
template <typename T>
NGD_HD void tap_weights(const Taps<T>& t, T w[4]) {
  w[0] = t.wx0 * t.wy0;
  w[1] = t.wx1 * t.wy0;
  w[2] = t.wx0 * t.wy1;
  w[3] = t.wx1 * t.wy1;
}

template <typename T>
NGD_HD T blend(const Taps<T>& t, const T v[4]) {
  T w[4];
  tap_weights(t, w);
  return w[0] * v[0] + w[1] * v[1] + w[2] * v[2] + w[3] * v[3];
}

// d(blend)/d(ix) and d(blend)/d(iy) for one channel.
template <typename T>
NGD_HD void blend_grad(const Taps<T>& t, const T v[4], T& d_ix, T& d_iy) {
  d_ix = t.wy0 * (v[1] - v[0]) + t.wy1 * (v[3] - v[2]);
  d_iy = t.wx0 * (v[2] - v[0]) + t.wx1 * (v[3] - v[1]);
}

// Adds one plane's channel sums of grad * d(blend)/d(ix) and grad * d(blend)/d(iy) to the
// gradient of the two coordinates it reads (ix = ((g + 1) * W - 1) / 2, g = coord * scale);
// a NaN point (`finite` false) makes both NaN.
template <typename T>
NGD_HD void add_coord_grad(const Params& p, int plane, bool finite, T sum_x, T sum_y, T g[3]) {
  if (!finite) {
    g[p.axis_x[plane]] = g[p.axis_y[plane]] = T(NAN);
    return;
  }
  const T scale = T(p.scale);
  g[p.axis_x[plane]] += sum_x * (T(p.w) / T(2)) * scale;
  g[p.axis_y[plane]] += sum_y * (T(p.h) / T(2)) * scale;
}

// Host only (triplane_cpu, render_cpu): where one point's four taps read channel 0 and
// how far apart channels are. A tap outside the plane reads a row of zeros instead, so
// the channel loops have no branches and vectorize when the planes are channels-last.
template <typename S>
struct TapRows {
  const S* row[4];
  int64_t stride[4];
  bool unit_stride;
};

template <typename S, typename T>
inline TapRows<S> tap_rows(const Taps<T>& t, const S* plane, const Params& p, const S* zeros) {
  TapRows<S> rows;
  const bool valid[4] = {t.valid_y0 && t.valid_x0, t.valid_y0 && t.valid_x1, t.valid_y1 && t.valid_x0,
                         t.valid_y1 && t.valid_x1};
  const int64_t dx[4] = {0, 1, 0, 1}, dy[4] = {0, 0, 1, 1};
  rows.unit_stride = true;
  for (int k = 0; k < 4; ++k) {
    rows.row[k] = valid[k] ? plane + (t.y0 + dy[k]) * p.sp_h + (t.x0 + dx[k]) * p.sp_w : zeros;
    rows.stride[k] = valid[k] ? p.sp_c : 1;
    rows.unit_stride = rows.unit_stride && rows.stride[k] == 1;
  }
  return rows;
}

// The CPU loops of one ISA (csrc/cpu/sample_triplanes.cpp, compiled once per ISA).
void forward_cpu_isa(const Params& p);
void backward_cpu_isa(const Params& p);

NGD_ISA_END

void forward_cpu(const Params& p);
void backward_cpu(const Params& p);
void forward_cuda(const Params& p, int device, std::uintptr_t stream);
void backward_cuda(const Params& p, int device, std::uintptr_t stream);

}  // namespace sample_triplanes
}  // namespace ngd
