// render_triplanes, fused, on the CPU (forward only): one ray per iteration, all of its
// samples (depths, densities, colors) in per-thread scratch. The decoder runs on a ray's
// samples in batches of kChunk: register-tiled layers and vectorizable activations. With
// p.pointwise it runs render_triplanes.h's render_ray_pointwise instead (the CUDA kernel's path).
// Compiled once per CPU ISA (NGD_ISA); csrc/cpu/cpu_dispatch.cpp picks one at run time.
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "nerfgan_distill/cpu_vec.h"
#include "nerfgan_distill/host_half.h"
#include "nerfgan_distill/philox.h"
#include "nerfgan_distill/render_triplanes.h"

namespace ngd {
namespace render_triplanes {
NGD_ISA_BEGIN
namespace {

// --- vectorizable float math ---------------------------------------------------------------
// The decoder's 64 softplus and 32 sigmoid per sample would cost more than its matrix
// products as libm calls, which do not vectorize. These use only +, -, *, / and bit
// moves (no FMA: both ISA builds round alike), to within a few ulp of libm. Double
// keeps libm: fp64 is for accuracy, not speed.

// exp(z) for z <= 0: z = n ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor series to
// r^7 (truncation < 1e-8 relative), times 2^n built in the exponent bits. NaN stays NaN.
inline float exp_nonpositive(float z) {
  const float x = z > -87.0f ? z : -87.0f;  // 2^n stays a normal float (exp(-87) is 1.6e-38); NaN: -87
  const float shifter = 12582912.0f;        // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 in two parts (Cody-Waite)
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return z == z ? p * scale : z;
}

// log1p(e) for e in [0, 1]: 2 atanh(s) with s = e / (2 + e) in [0, 1/3], by its series to
// s^15 (truncation < 2e-8 relative).
inline float log1p_unit(float e) {
  const float s = e / (2.0f + e), s2 = s * s;
  float p = 1.0f / 15.0f;
  p = p * s2 + 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

// torch's softplus (threshold 20) as max(x, 0) + log1p(exp(-|x|)).
inline float fast_softplus(float x) {
  const float a = x < 0.0f ? -x : x;
  const float tail = log1p_unit(exp_nonpositive(-a));
  return x > 20.0f ? x : (x > 0.0f ? x : 0.0f) + tail;
}
inline double fast_softplus(double x) { return composite_rays::softplus(x); }

// The widened sigmoid, from e = exp(-|x|) (no overflow).
inline float fast_color_activation(float x) {
  const float e = exp_nonpositive(x < 0.0f ? x : -x);
  const float sigmoid = x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
  return sigmoid * (1.0f + 2.0f * sigmoid_pad<float>()) - sigmoid_pad<float>();
}
inline double fast_color_activation(double x) { return color_activation(x); }

int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// --- decoder layers ----------------------------------------------------------------------------
// Each layer runs in register tiles of kRows samples x two vectors of outputs over its
// whole input, then adds the bias: the operation order of render_triplanes.h's point decoder, so
// the same rounding (and the same results from both ISA builds). GCC vector types keep
// the tile in registers.

using cpu_vec::kLanes;
using cpu_vec::load_vec;
using cpu_vec::store_vec;
using cpu_vec::Vec;

constexpr int64_t kRows = 4;
constexpr int64_t kChunk = 16;  // samples per decoder batch (a multiple of kRows); stays in L1

// A layer's weight transposed ([n_in][n_out]) and bias, zero-padded to whole tiles.
template <typename T>
struct Layer {
  static constexpr int64_t kTile = 2 * kLanes<T>;
  int64_t n_in, n_out, padded;
  std::vector<T> wt, bias;

  Layer(const void* wt_in, const void* bias_in, int64_t in, int64_t out)
      : n_in(in), n_out(out), padded((out + kTile - 1) / kTile * kTile), wt(in * padded, T(0)), bias(padded, T(0)) {
    const T* w = static_cast<const T*>(wt_in);
    for (int64_t i = 0; i < in; ++i) std::copy(w + i * out, w + (i + 1) * out, wt.begin() + i * padded);
    std::copy(static_cast<const T*>(bias_in), static_cast<const T*>(bias_in) + out, bias.begin());
  }

  // out [rows, padded] from the first n_in columns of in [rows, in_stride], for `count` rows
  // rounded up to kRows (the extra rows hold stale values; their outputs are not used).
  void apply(const T* in, int64_t in_stride, int64_t count, T* out) const {
    for (int64_t s0 = 0; s0 < count; s0 += kRows) {
      for (int64_t j0 = 0; j0 < padded; j0 += kTile) {
        Vec<T> lo[kRows] = {}, hi[kRows] = {};
        for (int64_t i = 0; i < n_in; ++i) {
          const Vec<T> w_lo = load_vec(wt.data() + i * padded + j0);
          const Vec<T> w_hi = load_vec(wt.data() + i * padded + j0 + kLanes<T>);
          for (int64_t r = 0; r < kRows; ++r) {
            const T x = in[(s0 + r) * in_stride + i];
            lo[r] += x * w_lo;
            hi[r] += x * w_hi;
          }
        }
        const Vec<T> b_lo = load_vec(bias.data() + j0), b_hi = load_vec(bias.data() + j0 + kLanes<T>);
        for (int64_t r = 0; r < kRows; ++r) {
          store_vec(out + (s0 + r) * padded + j0, lo[r] + b_lo);
          store_vec(out + (s0 + r) * padded + j0 + kLanes<T>, hi[r] + b_hi);
        }
      }
    }
  }
};

// One thread's buffers, sized once for the largest ray.
template <typename T>
struct Scratch {
  std::vector<T> depths, sigma, colors;  // [D + Di] (coarse, then fine) and [D + Di, C_out]
  std::vector<T> weights, cdf;           // [D - 1] coarse interval weights, [D - 2] cdf
  std::vector<SampleIndex> coarse_order, fine_order, order;
  // One decoder batch: one sample's features per plane [3, C], their mean [kChunk, C], the
  // layers' outputs [kChunk, padded]; acc: the final walk's feature sums [C_out].
  std::vector<T> plane_values, features, hidden, out, acc;

  Scratch(const Params& p, const Layer<T>& fc1, const Layer<T>& fc2) {
    const int64_t s = p.coarse + p.fine, c = p.planes.c, c_out = p.outputs - 1;
    depths.resize(s);
    sigma.resize(s);
    colors.resize(s * c_out);
    weights.resize(p.coarse - 1);
    cdf.resize(pdf_size(p.coarse) + 1);
    coarse_order.resize(p.coarse);
    fine_order.resize(p.fine);
    order.resize(s);
    plane_values.resize(3 * c);
    features.resize(kChunk * c, T(0));
    hidden.resize(kChunk * fc1.padded, T(0));
    out.resize(kChunk * fc2.padded);
    acc.resize(c_out);
  }
};

// A ray's origin and direction, and its index over the batch (the RNG counter).
template <typename T>
struct Ray {
  int64_t index, item;
  T o[3], d[3];
};

template <typename S, typename T>
class Renderer {
 public:
  explicit Renderer(const Params& p)
      : fc1(p.fc1_wt, p.fc1_bias, p.planes.c, p.hidden),
        fc2(p.fc2_wt, p.fc2_bias, p.hidden, p.outputs),
        p_(p), planes_(static_cast<const S*>(p.planes.planes)), zeros_(p.planes.c, StoreAs<S>::from(T(0))),
        c_(p.planes.c), c_out_(p.outputs - 1) {}

  const Layer<T> fc1, fc2;

  Ray<T> ray(int64_t index) const {
    Ray<T> r;
    r.index = index;
    r.item = index / p_.rays;
    const T* o = static_cast<const T*>(p_.origins) + index * 3;
    const T* d = static_cast<const T*>(p_.directions) + index * 3;
    for (int a = 0; a < 3; ++a) {
      r.o[a] = o[a];
      r.d[a] = d[a];
    }
    return r;
  }

  // For 'auto': the hit rays' smallest and largest start, over the whole batch.
  MissFallback<T> miss_fallback(int64_t total) const {
    MissFallback<T> f{std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity(), false};
    if (!p_.auto_limits) return f;
    for (int64_t i = 0; i < total; ++i) {
      const Ray<T> r = ray(i);
      const Span<T> span = box_limits(r.o, r.d, T(p_.box_side / 2));
      if (!(span.end > span.start)) continue;
      f.lo = std::min(f.lo, span.start);
      f.hi = std::max(f.hi, span.start);
      f.any_hit = true;
    }
    return f;
  }

  // Renders one ray into the outputs (its depth unclamped) and widens [lo, hi] by its depths.
  void render(const Ray<T>& r, const MissFallback<T>& fallback, Scratch<T>& s, T& lo, T& hi) const {
    const int64_t d = p_.coarse, di = p_.fine;
    const auto draw = [&](uint32_t stream, int64_t k) {
      return philox::uniform<T>(p_.seed, uint64_t(r.index), stream, uint32_t(k));
    };
    const Span<T> span = ray_span(p_, r.o, r.d, fallback);
    for (int64_t k = 0; k < d; ++k)
      s.depths[k] = coarse_depth(p_, span, k, p_.stochastic ? draw(kJitterStream, k) : T(0));
    shade(r, s.depths.data(), d, s.sigma.data(), s.colors.data(), s);
    for (int64_t k = 0; k < d; ++k) s.order[k] = SampleIndex(k);
    if (di > 0) {
      importance(s, draw);
      shade(r, s.depths.data() + d, di, s.sigma.data() + d, s.colors.data() + d * c_out_, s);
      unify(s);
    }
    composite(r, s, lo, hi);
  }

 private:
  // The mean of the three planes' bilinear features at the m depths t, into s.features [m, C].
  void features(const Ray<T>& r, const T* t, int64_t m, Scratch<T>& s) const {
    const sample_triplanes::Params& g = p_.planes;
    const T scale = T(g.scale);
    for (int64_t i = 0; i < m; ++i) {
      T xyz[3];
      for (int a = 0; a < 3; ++a) xyz[a] = r.o[a] + t[i] * r.d[a];
      for (int plane = 0; plane < 3; ++plane) {
        const sample_triplanes::Taps<T> taps =
            sample_triplanes::locate(xyz[g.axis_x[plane]] * scale, xyz[g.axis_y[plane]] * scale, g.w, g.h);
        plane_features(taps, planes_ + r.item * g.sp_n + plane * g.sp_p, s.plane_values.data() + plane * c_);
      }
      const T *v0 = s.plane_values.data(), *v1 = v0 + c_, *v2 = v1 + c_;
      T* f = s.features.data() + i * c_;
      for (int64_t ch = 0; ch < c_; ++ch) f[ch] = mean3(v0[ch], v1[ch], v2[ch]);
    }
  }

  // One plane's bilinear features [C] at `taps`; NaN for a NaN point.
  void plane_features(const sample_triplanes::Taps<T>& taps, const S* plane, T* v) const {
    if (!taps.finite) {
      std::fill(v, v + c_, std::numeric_limits<T>::quiet_NaN());
      return;
    }
    T w[4];
    sample_triplanes::tap_weights(taps, w);
    const sample_triplanes::TapRows<S> rows = sample_triplanes::tap_rows(taps, plane, p_.planes, zeros_.data());
    if (rows.unit_stride) {  // channels-last: vectorizes over channels
      const S *r0 = rows.row[0], *r1 = rows.row[1], *r2 = rows.row[2], *r3 = rows.row[3];
      for (int64_t ch = 0; ch < c_; ++ch)
        v[ch] = w[0] * load_as<T>(r0[ch]) + w[1] * load_as<T>(r1[ch]) + w[2] * load_as<T>(r2[ch]) +
                w[3] * load_as<T>(r3[ch]);
      return;
    }
    for (int64_t ch = 0; ch < c_; ++ch)
      v[ch] = w[0] * load_as<T>(rows.row[0][ch * rows.stride[0]]) + w[1] * load_as<T>(rows.row[1][ch * rows.stride[1]]) +
              w[2] * load_as<T>(rows.row[2][ch * rows.stride[2]]) + w[3] * load_as<T>(rows.row[3][ch * rows.stride[3]]);
  }

  // The decoder at `count` depths t of the ray: raw densities and activated colors.
  void shade(const Ray<T>& r, const T* t, int64_t count, T* sigma, T* colors, Scratch<T>& s) const {
    for (int64_t s0 = 0; s0 < count; s0 += kChunk) {
      const int64_t m = std::min(kChunk, count - s0);
      features(r, t + s0, m, s);
      T* h = s.hidden.data();
      fc1.apply(s.features.data(), c_, m, h);
      for (int64_t i = 0; i < m * fc1.padded; ++i) h[i] = fast_softplus(h[i]);
      fc2.apply(h, fc1.padded, m, s.out.data());
      for (int64_t i = 0; i < m; ++i) {
        const T* o = s.out.data() + i * fc2.padded;
        T* col = colors + (s0 + i) * c_out_;
        sigma[s0 + i] = o[0];
        for (int64_t ch = 0; ch < c_out_; ++ch) col[ch] = fast_color_activation(o[1 + ch]);
      }
    }
  }

  // The fine depths, from the coarse pass's interval weights.
  template <typename Draw>
  void importance(Scratch<T>& s, Draw draw) const {
    const int64_t d = p_.coarse;
    const T* t = s.depths.data();
    Walk<T> walk;
    for (int64_t k = 0; k + 1 < d; ++k) s.weights[k] = walk_interval(walk, s.sigma[k], s.sigma[k + 1], t[k], t[k + 1]);
    importance_cdf(s.weights.data(), d, s.cdf.data());
    const int64_t k_count = pdf_size(d);
    for (int64_t j = 0; j < p_.fine; ++j)
      s.depths[d + j] = importance_depth(t, s.cdf.data(), k_count, importance_uniform<T>(p_, j, draw));
  }

  // s.order: all samples by depth (a stable sort of the coarse ones, then the fine ones).
  void unify(Scratch<T>& s) const {
    const int64_t d = p_.coarse, di = p_.fine;
    for (int64_t k = 0; k < d; ++k) s.coarse_order[k] = SampleIndex(k);
    for (int64_t j = 0; j < di; ++j) s.fine_order[j] = SampleIndex(d + j);
    sort_indices(s.depths.data(), s.coarse_order.data(), d);
    sort_indices(s.depths.data(), s.fine_order.data(), di);
    merge_indices(s.depths.data(), s.coarse_order.data(), d, s.fine_order.data(), di, s.order.data());
  }

  // The final MipRayMarcher2 walk over s.order.
  void composite(const Ray<T>& r, Scratch<T>& s, T& lo, T& hi) const {
    const int64_t count = p_.coarse + p_.fine;
    const T* t = s.depths.data();
    T* acc = s.acc.data();
    std::fill(acc, acc + c_out_, T(0));
    Walk<T> walk;
    for (int64_t k = 0; k + 1 < count; ++k) {
      const int64_t a = s.order[k], b = s.order[k + 1];
      const T w = walk_interval(walk, s.sigma[a], s.sigma[b], t[a], t[b]);
      const T *c0 = s.colors.data() + a * c_out_, *c1 = s.colors.data() + b * c_out_;
      for (int64_t ch = 0; ch < c_out_; ++ch) acc[ch] += mid_color(w, c0[ch], c1[ch]);
    }
    for (int64_t k = 0; k < count; ++k) {
      lo = nan_min(lo, t[k]);
      hi = nan_max(hi, t[k]);
    }
    T* rgb = static_cast<T*>(p_.rgb) + r.index * c_out_;
    for (int64_t ch = 0; ch < c_out_; ++ch) rgb[ch] = final_feature(acc[ch], walk, p_.white_back);
    static_cast<T*>(p_.depth)[r.index] = unclamped_depth(walk);
    static_cast<T*>(p_.weight_total)[r.index] = walk.weight_total;
  }

  const Params& p_;
  const S* planes_;
  const std::vector<S> zeros_;  // the row a tap outside the plane reads
  const int64_t c_, c_out_;
};

template <typename S, typename T>
void forward(const Params& p) {
  const Renderer<S, T> renderer(p);
  const int64_t total = p.planes.n * p.rays;
  const MissFallback<T> fallback = renderer.miss_fallback(total);
  // Each thread's depth range; min and max are exact, so the combined range (and every
  // output) does not depend on the thread count.
  std::vector<T> lo(p.threads, std::numeric_limits<T>::infinity()), hi(p.threads, -std::numeric_limits<T>::infinity());
#pragma omp parallel num_threads(p.threads) if (total > 1)
  {
    Scratch<T> scratch(p, renderer.fc1, renderer.fc2);
    T thread_lo = std::numeric_limits<T>::infinity(), thread_hi = -std::numeric_limits<T>::infinity();
    const S* planes = static_cast<const S*>(p.planes.planes);
    const auto load = [planes](int64_t offset) { return load_as<T>(planes[offset]); };
#pragma omp for schedule(static)
    for (int64_t i = 0; i < total; ++i) {
      if (p.pointwise)
        render_ray_pointwise(p, i, fallback, load, thread_lo, thread_hi);
      else
        renderer.render(renderer.ray(i), fallback, scratch, thread_lo, thread_hi);
    }
    lo[thread_index()] = thread_lo;
    hi[thread_index()] = thread_hi;
  }
  T depth_lo = lo[0], depth_hi = hi[0];
  for (int t = 1; t < p.threads; ++t) {
    depth_lo = nan_min(depth_lo, lo[t]);
    depth_hi = nan_max(depth_hi, hi[t]);
  }
  // EG3D clamps each ray's depth to the range of all depths in the batch.
  T* depth = static_cast<T*>(p.depth);
  for (int64_t i = 0; i < total; ++i) depth[i] = composite_rays::final_depth(depth[i], depth_lo, depth_hi);
}

}  // namespace

void forward_cpu_isa(const Params& p) {
  with_host_dtype(p.planes.dtype, "render_triplanes_cpu", [&](auto s, auto t) { forward<decltype(s), decltype(t)>(p); });
}

NGD_ISA_END
}  // namespace render_triplanes
}  // namespace ngd
