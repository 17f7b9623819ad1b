// composite_rays on CUDA: one warp per ray. Every lane walks the ray's intervals (the
// same scalar math, so the lanes agree bit for bit) and owns channels lane, lane + 32,
// ...; per-interval channel sums of the backward pass are warp reductions. Reads of a
// sample's channels are coalesced.
#include <algorithm>

#include "nerfgan_distill/composite_rays.h"
#include "nerfgan_distill/cuda_utils.cuh"

namespace ngd {
namespace composite_rays {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;

template <typename T>
__device__ T warp_sum(T v) {
  // A butterfly: every lane ends with the same value (each addition is commutative).
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename S, typename T>
__global__ void forward_kernel(Params p) {
  const S* __restrict__ colors = static_cast<const S*>(p.colors);
  const S* __restrict__ densities = static_cast<const S*>(p.densities);
  const S* __restrict__ depths = static_cast<const S*>(p.depths);
  const T* __restrict__ range = static_cast<const T*>(p.depth_range);
  S* __restrict__ rgb = static_cast<S*>(p.rgb);
  const int lane = threadIdx.x % kWarp;
  const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (r >= p.rays) return;  // a whole warp leaves together
  const int64_t s = p.s, c = p.c;
  const S* col = colors + r * s * c;
  const S* sigma = densities + r * s;
  const S* t = depths + r * s;
  // Channel chunks of a warp's width; each chunk walks the ray again (cheap scalar math).
  for (int64_t c0 = 0; c0 < c; c0 += kWarp) {
    const int64_t ch = c0 + lane;
    const bool mine = ch < c;
    const bool first = c0 == 0 && lane == 0;  // writes the per-ray outputs
    T acc = T(0), transmittance = T(1), weight_total = T(0), depth_sum = T(0);
    for (int64_t k = 0; k + 1 < s; ++k) {
      const T t0 = cuda::load_as<T>(t[k]), t1 = cuda::load_as<T>(t[k + 1]);
      const Interval<T> v = interval(cuda::load_as<T>(sigma[k]), cuda::load_as<T>(sigma[k + 1]), t0, t1);
      const T w = v.alpha * transmittance;
      transmittance = attenuate(transmittance, v.alpha);
      weight_total += w;
      depth_sum += w * ((t0 + t1) / T(2));
      if (mine) acc += w * ((cuda::load_as<T>(col[k * c + ch]) + cuda::load_as<T>(col[(k + 1) * c + ch])) / T(2));
      if (first) static_cast<S*>(p.weights)[r * (s - 1) + k] = cuda::StoreAs<S>::from(w);
    }
    if (first) {
      static_cast<S*>(p.depth)[r] = cuda::StoreAs<S>::from(final_depth(depth_sum / weight_total, range[0], range[1]));
    }
    const T back = p.white_back ? T(1) - weight_total : T(0);
    if (mine) rgb[r * c + ch] = cuda::StoreAs<S>::from((acc + back) * T(2) - T(1));
  }
}

template <typename S, typename T>
__global__ void backward_kernel(Params p) {
  const S* __restrict__ colors = static_cast<const S*>(p.colors);
  const S* __restrict__ densities = static_cast<const S*>(p.densities);
  const S* __restrict__ depths = static_cast<const S*>(p.depths);
  const T* __restrict__ range = static_cast<const T*>(p.depth_range);
  const S* __restrict__ weights = static_cast<const S*>(p.weights_in);
  const S* __restrict__ grad_rgb = static_cast<const S*>(p.grad_rgb);
  const S* __restrict__ grad_weights = static_cast<const S*>(p.grad_weights);
  S* __restrict__ grad_colors = static_cast<S*>(p.grad_colors);
  S* __restrict__ grad_densities = static_cast<S*>(p.grad_densities);
  const int lane = threadIdx.x % kWarp;
  const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (r >= p.rays) return;
  const int64_t s = p.s, c = p.c;
  const S* col = colors + r * s * c;
  const S* sigma = densities + r * s;
  const S* t = depths + r * s;
  const S* w_saved = weights + r * (s - 1);
  const S* g_rgb = grad_rgb + r * c;
  T* tr = static_cast<T*>(p.transmittance) + r * (s - 1);
  // Forward walk: the transmittance before each interval, and the depth's normaliser.
  T transmittance = T(1), weight_total = T(0), depth_sum = T(0);
  for (int64_t k = 0; k + 1 < s; ++k) {
    const T t0 = cuda::load_as<T>(t[k]), t1 = cuda::load_as<T>(t[k + 1]);
    const Interval<T> v = interval(cuda::load_as<T>(sigma[k]), cuda::load_as<T>(sigma[k + 1]), t0, t1);
    const T w = v.alpha * transmittance;
    if (lane == 0) tr[k] = transmittance;
    transmittance = attenuate(transmittance, v.alpha);
    weight_total += w;
    depth_sum += w * ((t0 + t1) / T(2));
  }
  __syncwarp();  // lane 0's transmittance writes are read by every lane below
  // An empty ray (0/0) has no depth gradient; keep its NaN out of the other terms.
  const T raw = depth_sum / weight_total;
  const T raw_depth = ngd_isfinite(raw) ? raw : T(0);
  const T depth_scale =
      cuda::load_as<T>(static_cast<const S*>(p.grad_depth)[r]) * depth_grad_scale(raw, range[0], range[1], weight_total);
  T grad_rgb_sum = T(0);
  for (int64_t ch = lane; ch < c; ch += kWarp) grad_rgb_sum += cuda::load_as<T>(g_rgb[ch]);
  grad_rgb_sum = warp_sum(grad_rgb_sum);
  const T back = p.white_back ? T(2) * grad_rgb_sum : T(0);
  // Reverse walk: `later` is the sum over later intervals of dL/dw * w (see composite_rays.cpp).
  T later = T(0), dx_next = T(0);
  for (int64_t k = s - 2; k >= 0; --k) {
    const T t0 = cuda::load_as<T>(t[k]), t1 = cuda::load_as<T>(t[k + 1]);
    const Interval<T> v = interval(cuda::load_as<T>(sigma[k]), cuda::load_as<T>(sigma[k + 1]), t0, t1);
    T color_term = T(0);
    for (int64_t ch = lane; ch < c; ch += kWarp)
      color_term += cuda::load_as<T>(g_rgb[ch]) * (cuda::load_as<T>(col[k * c + ch]) + cuda::load_as<T>(col[(k + 1) * c + ch]));
    color_term = warp_sum(color_term);
    const T dw = cuda::load_as<T>(grad_weights[r * (s - 1) + k]) + color_term - back +
                 depth_scale * ((t0 + t1) / T(2) - raw_depth);
    const T d_alpha = dw * tr[k] - later / ((T(1) - v.alpha) + transmittance_floor<T>());
    later += dw * cuda::load_as<T>(w_saved[k]);
    const T dx = d_alpha * v.delta * v.keep * softplus_grad(v.x);
    if (lane == 0) grad_densities[r * s + k + 1] = cuda::StoreAs<S>::from((dx + dx_next) / T(2));
    dx_next = dx;
  }
  if (lane == 0) grad_densities[r * s] = cuda::StoreAs<S>::from(dx_next / T(2));
  // Each sample's color enters the midpoints of the intervals on both sides of it.
  for (int64_t j = 0; j < s; ++j) {
    const T w_sides = (j > 0 ? cuda::load_as<T>(w_saved[j - 1]) : T(0)) + (j + 1 < s ? cuda::load_as<T>(w_saved[j]) : T(0));
    for (int64_t ch = lane; ch < c; ch += kWarp)
      grad_colors[(r * s + j) * c + ch] = cuda::StoreAs<S>::from(cuda::load_as<T>(g_rgb[ch]) * w_sides);
  }
}

unsigned blocks_for(int64_t rays) { return unsigned((rays + kWarpsPerBlock - 1) / kWarpsPerBlock); }

}  // namespace

void forward_cuda(const Params& p, int device, std::uintptr_t stream_handle) {
  if (p.rays == 0) return;
  cuda::DeviceGuard guard(device, "composite_rays_cuda");
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_handle);
  cuda::with_dtype(p.dtype, "composite_rays_cuda", [&](auto s, auto t) {
    forward_kernel<decltype(s), decltype(t)><<<blocks_for(p.rays), kWarp * kWarpsPerBlock, 0, stream>>>(p);
  });
  cuda::check(cudaGetLastError(), "composite_rays_cuda", "kernel launch failed");
}

void backward_cuda(const Params& p, int device, std::uintptr_t stream_handle) {
  if (p.rays == 0) return;
  cuda::DeviceGuard guard(device, "composite_rays_cuda");
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_handle);
  cuda::with_dtype(p.dtype, "composite_rays_cuda", [&](auto s, auto t) {
    backward_kernel<decltype(s), decltype(t)><<<blocks_for(p.rays), kWarp * kWarpsPerBlock, 0, stream>>>(p);
  });
  cuda::check(cudaGetLastError(), "composite_rays_cuda", "kernel launch failed");
}

}  // namespace composite_rays
}  // namespace ngd
