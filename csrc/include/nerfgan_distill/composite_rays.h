// composite_rays: EG3D's MipRayMarcher2 along each ray. The per-interval math is
// shared by the CPU and CUDA kernels; both walk a ray's intervals in order with the
// same operations, so they agree with each other to rounding of the channel sums.
#pragma once

#include <cstdint>

#include "nerfgan_distill/common.h"

namespace ngd {
namespace composite_rays {

struct Params {
  const void* colors = nullptr;       // [rays, S, C] dense, storage dtype
  const void* densities = nullptr;    // [rays, S] dense, raw (before softplus(x - 1))
  const void* depths = nullptr;       // [rays, S] dense, sorted along S
  const void* depth_range = nullptr;  // [2] compute type: global min and max of depths
  // forward outputs (storage dtype): rgb [rays, C], depth [rays], weights [rays, S-1]
  void* rgb = nullptr;
  void* depth = nullptr;
  void* weights = nullptr;
  // backward: the forward's weights, the output gradients (storage dtype), a
  // [rays, S-1] compute-type scratch for the transmittance, and the input gradients
  const void* weights_in = nullptr;
  const void* grad_rgb = nullptr;
  const void* grad_depth = nullptr;
  const void* grad_weights = nullptr;
  void* transmittance = nullptr;
  void* grad_colors = nullptr;     // [rays, S, C], storage dtype
  void* grad_densities = nullptr;  // [rays, S], storage dtype
  int64_t rays = 0, s = 0, c = 0;
  bool white_back = false;
  int dtype = kFloat32;
  int threads = 1;  // CPU only
};

NGD_ISA_BEGIN

// EG3D adds this to 1 - alpha, so the transmittance never reaches zero.
template <typename T> NGD_HD T transmittance_floor() { return T(1e-10); }

// torch.nn.functional.softplus (beta 1, threshold 20) and its derivative.
template <typename T> NGD_HD T softplus(T x) { return x > T(20) ? x : ngd_log1p(ngd_exp(x)); }
template <typename T> NGD_HD T softplus_grad(T x) {
  if (x > T(20)) return T(1);
  const T z = ngd_exp(x);
  return z / (z + T(1));
}

// One interval [t0, t1] between samples with raw densities d0 and d1.
template <typename T>
struct Interval {
  T x;      // the midpoint density minus 1 (softplus input)
  T delta;  // t1 - t0
  T keep;   // exp(-softplus(x) * delta) = 1 - alpha
  T alpha;
};

template <typename T>
NGD_HD Interval<T> interval(T d0, T d1, T t0, T t1) {
  Interval<T> v;
  v.delta = t1 - t0;
  v.x = (d0 + d1) / T(2) - T(1);
  v.keep = ngd_exp(-(softplus(v.x) * v.delta));
  v.alpha = T(1) - v.keep;
  return v;
}

// The next transmittance: T * (1 - alpha + 1e-10), grouped as EG3D's torch code.
template <typename T>
NGD_HD T attenuate(T transmittance, T alpha) {
  return transmittance * ((T(1) - alpha) + transmittance_floor<T>());
}

// EG3D's depth: the weighted mean depth; 0/0 (NaN) becomes +inf; clamped to the global range.
template <typename T>
NGD_HD T final_depth(T raw, T lo, T hi) {
  const T d = ngd_isnan(raw) ? T(INFINITY) : raw;
  return d < lo ? lo : (d > hi ? hi : d);
}

// The gradient factor of the depth output: torch's nan_to_num and clamp pass the gradient
// only where raw was finite and inside [lo, hi]; then d(D/W)/dw = (t_mid - raw) / W.
template <typename T>
NGD_HD T depth_grad_scale(T raw, T lo, T hi, T weight_total) {
  return (ngd_isfinite(raw) && raw >= lo && raw <= hi) ? T(1) / weight_total : T(0);
}

// The CPU loops of one ISA (csrc/cpu/composite_rays.cpp, compiled once per ISA).
void forward_cpu_isa(const Params& p);
void backward_cpu_isa(const Params& p);

NGD_ISA_END

void forward_cpu(const Params& p);
void backward_cpu(const Params& p);
void forward_cuda(const Params& p, int device, std::uintptr_t stream);
void backward_cuda(const Params& p, int device, std::uintptr_t stream);

}  // namespace composite_rays
}  // namespace ngd
