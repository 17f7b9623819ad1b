// composite_rays on the CPU: one ray per iteration, walked in order (forward), or
// forward then in reverse (backward). Channel accumulators live in a per-thread buffer.
// Compiled once per CPU ISA (NGD_ISA); csrc/cpu/cpu_dispatch.cpp picks one at run time.
#include <vector>

#include "nerfgan_distill/composite_rays.h"
#include "nerfgan_distill/host_half.h"

namespace ngd {
namespace composite_rays {
NGD_ISA_BEGIN
namespace {

template <typename S, typename T>
void forward(const Params& p) {
  const S* colors = static_cast<const S*>(p.colors);
  const S* densities = static_cast<const S*>(p.densities);
  const S* depths = static_cast<const S*>(p.depths);
  const T* range = static_cast<const T*>(p.depth_range);
  S* rgb = static_cast<S*>(p.rgb);
  S* depth_out = static_cast<S*>(p.depth);
  S* weights = static_cast<S*>(p.weights);
  const int64_t s = p.s, c = p.c;
#pragma omp parallel num_threads(p.threads) if (p.rays * s * c >= 8192)
  {
    std::vector<T> acc(c);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < p.rays; ++r) {
      const S* col = colors + r * s * c;
      const S* sigma = densities + r * s;
      const S* t = depths + r * s;
      std::fill(acc.begin(), acc.end(), T(0));
      T transmittance = T(1), weight_total = T(0), depth_sum = T(0);
      for (int64_t k = 0; k + 1 < s; ++k) {
        const T t0 = load_as<T>(t[k]), t1 = load_as<T>(t[k + 1]);
        const Interval<T> v = interval(load_as<T>(sigma[k]), load_as<T>(sigma[k + 1]), t0, t1);
        const T w = v.alpha * transmittance;
        transmittance = attenuate(transmittance, v.alpha);
        weights[r * (s - 1) + k] = StoreAs<S>::from(w);
        weight_total += w;
        depth_sum += w * ((t0 + t1) / T(2));
        const S* c0 = col + k * c;
        const S* c1 = c0 + c;
        for (int64_t ch = 0; ch < c; ++ch) acc[ch] += w * ((load_as<T>(c0[ch]) + load_as<T>(c1[ch])) / T(2));
      }
      const T back = p.white_back ? T(1) - weight_total : T(0);
      for (int64_t ch = 0; ch < c; ++ch) rgb[r * c + ch] = StoreAs<S>::from((acc[ch] + back) * T(2) - T(1));
      depth_out[r] = StoreAs<S>::from(final_depth(depth_sum / weight_total, range[0], range[1]));
    }
  }
}

template <typename S, typename T>
void backward(const Params& p) {
  const S* colors = static_cast<const S*>(p.colors);
  const S* densities = static_cast<const S*>(p.densities);
  const S* depths = static_cast<const S*>(p.depths);
  const T* range = static_cast<const T*>(p.depth_range);
  const S* weights = static_cast<const S*>(p.weights_in);
  const S* grad_rgb = static_cast<const S*>(p.grad_rgb);
  const S* grad_depth = static_cast<const S*>(p.grad_depth);
  const S* grad_weights = static_cast<const S*>(p.grad_weights);
  T* trans = static_cast<T*>(p.transmittance);
  S* grad_colors = static_cast<S*>(p.grad_colors);
  S* grad_densities = static_cast<S*>(p.grad_densities);
  const int64_t s = p.s, c = p.c;
#pragma omp parallel for num_threads(p.threads) schedule(static) if (p.rays * s * c >= 8192)
  for (int64_t r = 0; r < p.rays; ++r) {
    const S* col = colors + r * s * c;
    const S* sigma = densities + r * s;
    const S* t = depths + r * s;
    const S* w_saved = weights + r * (s - 1);
    const S* g_rgb = grad_rgb + r * c;
    T* tr = trans + r * (s - 1);
    // Forward walk: the transmittance before each interval, and the depth's normaliser.
    T transmittance = T(1), weight_total = T(0), depth_sum = T(0);
    for (int64_t k = 0; k + 1 < s; ++k) {
      const T t0 = load_as<T>(t[k]), t1 = load_as<T>(t[k + 1]);
      const Interval<T> v = interval(load_as<T>(sigma[k]), load_as<T>(sigma[k + 1]), t0, t1);
      const T w = v.alpha * transmittance;
      tr[k] = transmittance;
      transmittance = attenuate(transmittance, v.alpha);
      weight_total += w;
      depth_sum += w * ((t0 + t1) / T(2));
    }
    // An empty ray (0/0) has no depth gradient; keep its NaN out of the other terms.
    const T raw = depth_sum / weight_total;
    const T raw_depth = ngd_isfinite(raw) ? raw : T(0);
    const T depth_scale = load_as<T>(grad_depth[r]) * depth_grad_scale(raw, range[0], range[1], weight_total);
    T grad_rgb_sum = T(0);
    for (int64_t ch = 0; ch < c; ++ch) grad_rgb_sum += load_as<T>(g_rgb[ch]);
    const T back = p.white_back ? T(2) * grad_rgb_sum : T(0);
    // Reverse walk: `later` is the sum over later intervals of dL/dw * w, the part of
    // dL/dalpha_k that flows through the transmittance of the intervals after k.
    T later = T(0), dx_next = T(0);
    for (int64_t k = s - 2; k >= 0; --k) {
      const T t0 = load_as<T>(t[k]), t1 = load_as<T>(t[k + 1]);
      const Interval<T> v = interval(load_as<T>(sigma[k]), load_as<T>(sigma[k + 1]), t0, t1);
      const S* c0 = col + k * c;
      const S* c1 = c0 + c;
      T color_term = T(0);
      for (int64_t ch = 0; ch < c; ++ch)
        color_term += load_as<T>(g_rgb[ch]) * (load_as<T>(c0[ch]) + load_as<T>(c1[ch]));  // 2 * g * mid
      const T dw = load_as<T>(grad_weights[r * (s - 1) + k]) + color_term - back +
                   depth_scale * ((t0 + t1) / T(2) - raw_depth);
      const T w = load_as<T>(w_saved[k]);
      const T d_alpha = dw * tr[k] - later / ((T(1) - v.alpha) + transmittance_floor<T>());
      later += dw * w;
      const T dx = d_alpha * v.delta * v.keep * softplus_grad(v.x);
      grad_densities[r * s + k + 1] = StoreAs<S>::from((dx + dx_next) / T(2));
      dx_next = dx;
    }
    grad_densities[r * s] = StoreAs<S>::from(dx_next / T(2));
    // Each sample's color enters the midpoints of the intervals on both sides of it.
    for (int64_t j = 0; j < s; ++j) {
      const T w_sides = (j > 0 ? load_as<T>(w_saved[j - 1]) : T(0)) + (j + 1 < s ? load_as<T>(w_saved[j]) : T(0));
      for (int64_t ch = 0; ch < c; ++ch)
        grad_colors[(r * s + j) * c + ch] = StoreAs<S>::from(load_as<T>(g_rgb[ch]) * w_sides);
    }
  }
}

}  // namespace

void forward_cpu_isa(const Params& p) {
  with_host_dtype(p.dtype, "composite_rays_cpu", [&](auto s, auto t) { forward<decltype(s), decltype(t)>(p); });
}

void backward_cpu_isa(const Params& p) {
  with_host_dtype(p.dtype, "composite_rays_cpu", [&](auto s, auto t) { backward<decltype(s), decltype(t)>(p); });
}

NGD_ISA_END
}  // namespace composite_rays
}  // namespace ngd
