// render_triplanes, fused: EG3D's ImportanceRenderer for one ray at a time (coarse
// stratified depths, tri-plane lookup, OSG decoder, MipRayMarcher2 weights, importance
// depths, fine pass, merge, final composite), with no per-sample tensors in memory.
// The per-ray math lives here as NGD_HD functions shared by the CPU and CUDA kernels;
// each mirrors a step of nerfgan_distill/ops/render_triplanes_ref.py (the reference)
// with the same operation order, so the kernels match it to rounding.
#pragma once

#include <cstdint>

#include "nerfgan_distill/common.h"
#include "nerfgan_distill/composite_rays.h"
#include "nerfgan_distill/philox.h"
#include "nerfgan_distill/sample_triplanes.h"

namespace ngd {
namespace render_triplanes {

// kMaxSamples (kernel_codes.h): samples per ray (coarse + fine) the kernels keep in per-ray
// scratch; Python routes larger renders to the composable path. render_ray_pointwise (the
// CUDA kernel) also keeps a sample's features and colors per ray: at most kCudaMaxChannels
// and kCudaMaxOutputs.
using SampleIndex = int16_t;  // indexes a ray's samples, < kMaxSamples

// Random streams of the stochastic mode (Philox counters: seed, ray, stream, sample).
constexpr uint32_t kJitterStream = 0, kUniformStream = 1;

struct Params {
  // The plane geometry, read as sample_triplanes reads it (coords, out and m unused).
  sample_triplanes::Params planes;
  const void* origins = nullptr;     // [N, R, 3] dense, compute type (double for fp64, else float)
  const void* directions = nullptr;  // [N, R, 3] dense, compute type
  const void* fc1_wt = nullptr;      // [C, hidden]: the first layer's weight transposed, compute type
  const void* fc1_bias = nullptr;    // [hidden]
  const void* fc2_wt = nullptr;      // [hidden, outputs]: outputs = 1 (density) + C_out
  const void* fc2_bias = nullptr;    // [outputs]
  void* rgb = nullptr;               // [N, R, C_out] compute type, EG3D's [-1, 1] convention
  void* depth = nullptr;             // [N, R]
  void* weight_total = nullptr;      // [N, R]
  // CUDA only: [N * R * 2 + 3] compute type: each ray's smallest and largest depth, then the
  // 'auto' fallback (smallest and largest start of the rays that hit the box, 1 if any did).
  void* scratch = nullptr;
  int64_t rays = 0;                  // R, rays per batch item
  int64_t hidden = 0, outputs = 0;
  int64_t coarse = 0, fine = 0;      // D >= 2, Di >= 0, D + Di <= kMaxSamples (EG3D needs D >= 4 with Di > 0)
  bool auto_limits = false;          // ray_start = ray_end = 'auto': the ray-box intersection
  bool disparity = false;
  bool white_back = false;
  double ray_start = 0, ray_end = 0, box_side = 1;
  bool stochastic = false;           // false: no jitter and u = linspace(0, 1, Di) (EG3D's det=True)
  uint64_t seed = 0;
  bool pointwise = false;            // render_ray_pointwise: always on CUDA; on the CPU, for tests
  int threads = 1;                   // CPU only
};

NGD_ISA_BEGIN

// EG3D's constants: the widened sigmoid's pad (from MipNeRF) and sample_pdf's eps.
template <typename T> NGD_HD T sigmoid_pad() { return T(0.001); }
template <typename T> NGD_HD T pdf_eps() { return T(1e-5); }

// torch.maximum / torch.minimum: NaN wins.
template <typename T> NGD_HD T nan_max(T a, T b) { return ngd_isnan(a) ? a : (ngd_isnan(b) || b > a ? b : a); }
template <typename T> NGD_HD T nan_min(T a, T b) { return ngd_isnan(a) ? a : (ngd_isnan(b) || b < a ? b : a); }

// Element i of torch.linspace(start, end, count) (its two-sided formula).
template <typename T>
NGD_HD T linspace_at(T start, T end, int64_t count, int64_t i) {
  if (count == 1) return start;
  const T step = (end - start) / T(count - 1);
  return i < count / 2 ? start + step * T(i) : end - step * T(count - 1 - i);
}

// --- coarse depths ---------------------------------------------------------------------------

template <typename T> struct Span { T start, end; };

// EG3D's get_ray_limits_box: slab test against the cube of side box_side, the near and
// far side picked by the sign of 1/d; a miss gives (-1, -2).
template <typename T>
NGD_HD Span<T> box_limits(const T o[3], const T d[3], T half) {
  T near_t[3], far_t[3];
  for (int a = 0; a < 3; ++a) {
    const T inv = T(1) / d[a];
    const T lower = (-half - o[a]) * inv, upper = (half - o[a]) * inv;
    near_t[a] = inv < T(0) ? upper : lower;
    far_t[a] = inv < T(0) ? lower : upper;
  }
  Span<T> span{near_t[0], far_t[0]};
  bool valid = true;
  for (int a = 1; a < 3; ++a) {
    valid = valid && !(span.start > far_t[a] || near_t[a] > span.end);
    span.start = nan_max(span.start, near_t[a]);
    span.end = nan_min(span.end, far_t[a]);
  }
  return valid ? span : Span<T>{T(-1), T(-2)};
}

// For 'auto': the smallest and largest start of the rays that hit the box (over the
// whole batch), which EG3D gives the rays that miss (as their start and end, sic).
template <typename T> struct MissFallback {
  T lo, hi;
  bool any_hit;
};

// The depth range a ray's coarse samples span.
template <typename T>
NGD_HD Span<T> ray_span(const Params& p, const T o[3], const T d[3], const MissFallback<T>& fallback) {
  if (!p.auto_limits) return Span<T>{T(p.ray_start), T(p.ray_end)};
  const Span<T> span = box_limits(o, d, T(p.box_side / 2));
  const bool hit = span.end > span.start;
  return (hit || !fallback.any_hit) ? span : Span<T>{fallback.lo, fallback.hi};
}

// Coarse sample k of D: evenly spaced (in depth, or in disparity) and moved by jitter
// (in [0, 1)) times the spacing, as coarse_depths in the reference.
template <typename T>
NGD_HD T coarse_depth(const Params& p, Span<T> span, int64_t k, T jitter) {
  const int64_t d = p.coarse;
  if (p.auto_limits) {
    const T length = span.end - span.start;
    return (span.start + (T(k) / T(d - 1)) * length) + jitter * (length / T(d - 1));
  }
  if (p.disparity) {
    const T s = linspace_at(T(0), T(1), d, k) + jitter * T(1.0 / double(d - 1));
    return T(1) / (T(1.0 / p.ray_start) * (T(1) - s) + T(1.0 / p.ray_end) * s);
  }
  return linspace_at(span.start, span.end, d, k) + jitter * T((p.ray_end - p.ray_start) / double(d - 1));
}

// --- tri-plane features and decoder, for one point ------------------------------------------
// The CPU kernel batches these (same operations, same order); the CUDA kernel calls them.

// The mean of the three planes' features.
template <typename T> NGD_HD T mean3(T a, T b, T c) { return (a + b + c) / T(3); }

// The features [C] of the point xyz of batch item `item`: each plane's bilinear sample
// (NaN for a NaN point), averaged. load(offset) reads the planes as T.
template <typename T, typename Load>
NGD_HD void point_features(const Params& p, int64_t item, const T xyz[3], Load load, T* f) {
  const sample_triplanes::Params& g = p.planes;
  sample_triplanes::Taps<T> taps[3];
  for (int plane = 0; plane < 3; ++plane)
    taps[plane] = sample_triplanes::locate(xyz[g.axis_x[plane]] * T(g.scale), xyz[g.axis_y[plane]] * T(g.scale), g.w, g.h);
  for (int64_t ch = 0; ch < g.c; ++ch) {
    T v[3];
    for (int plane = 0; plane < 3; ++plane) {
      T texels[4];
      sample_triplanes::gather(taps[plane], item * g.sp_n + plane * g.sp_p + ch * g.sp_c, g.sp_h, g.sp_w, load, texels);
      v[plane] = taps[plane].finite ? sample_triplanes::blend(taps[plane], texels) : T(NAN);
    }
    f[ch] = mean3(v[0], v[1], v[2]);
  }
}

// Hidden unit j of the decoder: softplus of its weighted inputs, summed in order, plus
// its bias (the weights come transposed: fc1_wt[i][j]).
template <typename T>
NGD_HD T hidden_unit(const Params& p, const T* f, int64_t j) {
  const T* wt = static_cast<const T*>(p.fc1_wt);
  T acc = T(0);
  for (int64_t i = 0; i < p.planes.c; ++i) acc += f[i] * wt[i * p.hidden + j];
  return composite_rays::softplus(acc + static_cast<const T*>(p.fc1_bias)[j]);
}

// The decoder's output 0, the raw density, alone.
template <typename T>
NGD_HD T point_density(const Params& p, const T* f) {
  const T* wt = static_cast<const T*>(p.fc2_wt);
  T acc = T(0);
  for (int64_t j = 0; j < p.hidden; ++j) acc += hidden_unit(p, f, j) * wt[j * p.outputs];
  return acc + static_cast<const T*>(p.fc2_bias)[0];
}

// The decoder's widened sigmoid on its color outputs: range (-0.001, 1.001).
template <typename T>
NGD_HD T color_activation(T x) {
  return (T(1) / (T(1) + ngd_exp(-x))) * (T(1) + T(2) * sigmoid_pad<T>()) - sigmoid_pad<T>();
}

// The decoder's outputs 1.. (the colors), activated, into colors[0..C_out).
template <typename T>
NGD_HD void point_colors(const Params& p, const T* f, T* colors) {
  const T* wt = static_cast<const T*>(p.fc2_wt);
  const int64_t c_out = p.outputs - 1;
  for (int64_t ch = 0; ch < c_out; ++ch) colors[ch] = T(0);
  for (int64_t j = 0; j < p.hidden; ++j) {
    const T h = hidden_unit(p, f, j);
    for (int64_t ch = 0; ch < c_out; ++ch) colors[ch] += h * wt[j * p.outputs + 1 + ch];
  }
  for (int64_t ch = 0; ch < c_out; ++ch) colors[ch] = color_activation(colors[ch] + static_cast<const T*>(p.fc2_bias)[1 + ch]);
}

// --- importance sampling (EG3D's sample_importance and sample_pdf) ------------------------------

// Smoothed weight k of `count` interval weights: a 2-tap max filter (edges keep their
// value), a 2-tap mean, plus 0.01.
template <typename T>
NGD_HD T smoothed_weight(const T* w, int64_t count, int64_t k) {
  const T left = k > 0 ? nan_max(w[k - 1], w[k]) : w[k];
  const T right = k + 1 < count ? nan_max(w[k], w[k + 1]) : w[k];
  return (left + right) / T(2) + T(0.01);
}

// The number of pdf weights sample_pdf sees: the D - 3 inner smoothed weights.
NGD_HD int64_t pdf_size(int64_t coarse) { return coarse > 3 ? coarse - 3 : 0; }

// The cdf (pdf_size + 1 entries, from 0) over the inner smoothed weights of the D - 1
// coarse interval weights, each plus eps.
template <typename T>
NGD_HD void importance_cdf(const T* weights, int64_t coarse, T* cdf) {
  const int64_t k_count = pdf_size(coarse);
  T total = T(0);
  for (int64_t j = 0; j < k_count; ++j) {
    cdf[j + 1] = smoothed_weight(weights, coarse - 1, j + 1) + pdf_eps<T>();
    total += cdf[j + 1];
  }
  cdf[0] = T(0);
  for (int64_t j = 0; j < k_count; ++j) cdf[j + 1] = cdf[j] + cdf[j + 1] / total;
}

// The inverse-cdf depth at u, with sample_pdf's quirks: the bins are the coarse
// midpoints indexed with cdf indices (the last midpoint is never used), and a cdf step
// under eps counts as 1.
template <typename T>
NGD_HD T importance_depth(const T* coarse_depths, const T* cdf, int64_t k_count, T u) {
  int64_t lo = 0, hi = k_count + 1;  // searchsorted(right=True): the first cdf entry > u
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (cdf[mid] <= u) lo = mid + 1; else hi = mid;
  }
  const int64_t below = lo > 0 ? lo - 1 : 0, above = lo < k_count ? lo : k_count;
  const T* z = coarse_depths;
  const T bin_below = (z[below] + z[below + 1]) / T(2), bin_above = (z[above] + z[above + 1]) / T(2);
  T denom = cdf[above] - cdf[below];
  denom = denom < pdf_eps<T>() ? T(1) : denom;
  return bin_below + (u - cdf[below]) / denom * (bin_above - bin_below);
}

// The uniform of fine sample j: linspace(0, 1, Di) when deterministic, else drawn.
template <typename T, typename Draw>
NGD_HD T importance_uniform(const Params& p, int64_t j, Draw draw) {
  return p.stochastic ? draw(kUniformStream, j) : linspace_at(T(0), T(1), p.fine, j);
}

// --- merge -------------------------------------------------------------------------------------

// torch.sort's order: NaN last.
template <typename T> NGD_HD bool sorts_before(T a, T b) { return a < b || (!ngd_isnan(a) && ngd_isnan(b)); }

// Stable insertion sort of idx[0..count) by t[idx[.]] (nearly sorted input is O(count)).
template <typename T>
NGD_HD void sort_indices(const T* t, SampleIndex* idx, int64_t count) {
  for (int64_t i = 1; i < count; ++i) {
    const SampleIndex v = idx[i];
    int64_t j = i;
    for (; j > 0 && sorts_before(t[v], t[idx[j - 1]]); --j) idx[j] = idx[j - 1];
    idx[j] = v;
  }
}

// Stable merge of two index lists sorted by t (a's first on ties): EG3D's unify_samples,
// a stable sort of the coarse samples followed by the fine ones.
template <typename T>
NGD_HD void merge_indices(const T* t, const SampleIndex* a, int64_t na, const SampleIndex* b, int64_t nb,
                          SampleIndex* out) {
  int64_t i = 0, j = 0;
  while (i < na || j < nb) {
    const bool take_b = i == na || (j < nb && sorts_before(t[b[j]], t[a[i]]));
    out[i + j] = take_b ? b[j] : a[i];
    if (take_b) ++j; else ++i;
  }
}

// --- compositing (MipRayMarcher2, composite_rays.h) -------------------------------------------------

template <typename T>
struct Walk {
  T transmittance = T(1), weight_total = T(0), depth_sum = T(0);
};

// The weight of the interval [t0, t1] between samples with raw densities d0 and d1; the
// caller adds weight * (c0 + c1) / 2 to the features.
template <typename T>
NGD_HD T walk_interval(Walk<T>& walk, T d0, T d1, T t0, T t1) {
  const composite_rays::Interval<T> v = composite_rays::interval(d0, d1, t0, t1);
  const T w = v.alpha * walk.transmittance;
  walk.transmittance = composite_rays::attenuate(walk.transmittance, v.alpha);
  walk.weight_total += w;
  walk.depth_sum += w * ((t0 + t1) / T(2));
  return w;
}

template <typename T> NGD_HD T mid_color(T w, T c0, T c1) { return w * ((c0 + c1) / T(2)); }

// A feature channel's output: white background, then EG3D's [-1, 1] convention.
template <typename T>
NGD_HD T final_feature(T acc, const Walk<T>& walk, bool white_back) {
  const T back = white_back ? T(1) - walk.weight_total : T(0);
  return (acc + back) * T(2) - T(1);
}

// The weighted mean depth before the clamp to the batch's depth range (composite_rays::final_depth).
template <typename T> NGD_HD T unclamped_depth(const Walk<T>& walk) { return walk.depth_sum / walk.weight_total; }

// --- one ray, a point at a time ----------------------------------------------------------------

// Renders ray `ray` (its depth unclamped) and widens [lo, hi] by its depths, keeping no
// colors: the coarse and fine passes evaluate densities only, and the final walk evaluates
// each sample's colors in depth order, compositing it with the previous sample. The CUDA
// kernel runs this per thread; the CPU kernel runs it when p.pointwise (tests), else a
// batched equivalent. load(offset) reads the planes as T.
template <typename T, typename Load>
NGD_HD void render_ray_pointwise(const Params& p, int64_t ray, const MissFallback<T>& fallback, Load load, T& lo,
                                 T& hi) {
  const int64_t item = ray / p.rays, d = p.coarse, di = p.fine, c_out = p.outputs - 1;
  T o[3], dir[3];
  for (int a = 0; a < 3; ++a) {
    o[a] = static_cast<const T*>(p.origins)[ray * 3 + a];
    dir[a] = static_cast<const T*>(p.directions)[ray * 3 + a];
  }
  const auto features = [&](T t, T* f) {
    T xyz[3];
    for (int a = 0; a < 3; ++a) xyz[a] = o[a] + t * dir[a];
    point_features(p, item, xyz, load, f);
  };
  const auto draw = [&](uint32_t stream, int64_t k) {
    return philox::uniform<T>(p.seed, uint64_t(ray), stream, uint32_t(k));
  };
  T t[kMaxSamples], sigma[kMaxSamples], f[kCudaMaxChannels];
  const Span<T> span = ray_span(p, o, dir, fallback);
  for (int64_t k = 0; k < d; ++k) {
    t[k] = coarse_depth(p, span, k, p.stochastic ? draw(kJitterStream, k) : T(0));
    features(t[k], f);
    sigma[k] = point_density(p, f);
  }
  SampleIndex order[kMaxSamples];
  for (int64_t k = 0; k < d; ++k) order[k] = SampleIndex(k);
  if (di > 0) {
    T weights[kMaxSamples], cdf[kMaxSamples];
    Walk<T> coarse_walk;
    for (int64_t k = 0; k + 1 < d; ++k) weights[k] = walk_interval(coarse_walk, sigma[k], sigma[k + 1], t[k], t[k + 1]);
    importance_cdf(weights, d, cdf);
    for (int64_t j = 0; j < di; ++j) {
      t[d + j] = importance_depth(t, cdf, pdf_size(d), importance_uniform<T>(p, j, draw));
      features(t[d + j], f);
      sigma[d + j] = point_density(p, f);
    }
    SampleIndex coarse_order[kMaxSamples], fine_order[kMaxSamples];
    for (int64_t k = 0; k < d; ++k) coarse_order[k] = SampleIndex(k);
    for (int64_t j = 0; j < di; ++j) fine_order[j] = SampleIndex(d + j);
    sort_indices(t, coarse_order, d);
    sort_indices(t, fine_order, di);
    merge_indices(t, coarse_order, d, fine_order, di, order);
  }
  T acc[kCudaMaxOutputs], previous[kCudaMaxOutputs], current[kCudaMaxOutputs];
  for (int64_t ch = 0; ch < c_out; ++ch) acc[ch] = T(0);
  Walk<T> walk;
  for (int64_t k = 0; k < d + di; ++k) {
    const int64_t b = order[k];
    features(t[b], f);
    point_colors(p, f, current);
    if (k > 0) {
      const int64_t a = order[k - 1];
      const T w = walk_interval(walk, sigma[a], sigma[b], t[a], t[b]);
      for (int64_t ch = 0; ch < c_out; ++ch) acc[ch] += mid_color(w, previous[ch], current[ch]);
    }
    for (int64_t ch = 0; ch < c_out; ++ch) previous[ch] = current[ch];
    lo = nan_min(lo, t[b]);
    hi = nan_max(hi, t[b]);
  }
  T* rgb = static_cast<T*>(p.rgb) + ray * c_out;
  for (int64_t ch = 0; ch < c_out; ++ch) rgb[ch] = final_feature(acc[ch], walk, p.white_back);
  static_cast<T*>(p.depth)[ray] = unclamped_depth(walk);
  static_cast<T*>(p.weight_total)[ray] = walk.weight_total;
}

// The CPU loops of one ISA (csrc/cpu/render_triplanes.cpp, compiled once per ISA).
void forward_cpu_isa(const Params& p);

NGD_ISA_END

void forward_cpu(const Params& p);
void forward_cuda(const Params& p, int device, std::uintptr_t stream);

}  // namespace render_triplanes
}  // namespace ngd
