// render_triplanes, fused, on CUDA (forward only): one thread per ray running
// render_triplanes.h's render_ray_pointwise (its depths, densities and sample order in local
// memory, no colors stored). Two single-block kernels do the batch-wide steps: the
// 'auto' fallback range before the render, the depth clamp after it.
#include <algorithm>

#include "nerfgan_distill/cuda_utils.cuh"
#include "nerfgan_distill/render_triplanes.h"

namespace ngd {
namespace render_triplanes {
namespace {

constexpr int kThreads = 128;        // rays per block
constexpr int kReduceThreads = 512;  // the single-block kernels

// Reduces one value per thread of the block with op; every thread gets the result.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op) {
  __shared__ T shared[kReduceThreads];
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) shared[threadIdx.x] = op(shared[threadIdx.x], shared[threadIdx.x + stride]);
    __syncthreads();
  }
  const T result = shared[0];
  __syncthreads();
  return result;
}

template <typename T>
__device__ T* fallback_slot(const Params& p) {
  return static_cast<T*>(p.scratch) + p.planes.n * p.rays * 2;
}

// 'auto': the smallest and largest start of the rays that hit the box, and whether any did.
template <typename T>
__global__ void miss_fallback_kernel(Params p) {
  const T* __restrict__ origins = static_cast<const T*>(p.origins);
  const T* __restrict__ directions = static_cast<const T*>(p.directions);
  T lo = T(INFINITY), hi = T(-INFINITY), hits = T(0);
  for (int64_t i = threadIdx.x; i < p.planes.n * p.rays; i += kReduceThreads) {
    const Span<T> span = box_limits(origins + i * 3, directions + i * 3, T(p.box_side / 2));
    if (!(span.end > span.start)) continue;
    lo = span.start < lo ? span.start : lo;
    hi = span.start > hi ? span.start : hi;
    hits = T(1);
  }
  lo = block_reduce(lo, [](T a, T b) { return b < a ? b : a; });
  hi = block_reduce(hi, [](T a, T b) { return b > a ? b : a; });
  hits = block_reduce(hits, [](T a, T b) { return b > a ? b : a; });
  if (threadIdx.x == 0) {
    T* slot = fallback_slot<T>(p);
    slot[0] = lo;
    slot[1] = hi;
    slot[2] = hits;
  }
}

template <typename S, typename T>
__global__ void __launch_bounds__(kThreads) render_kernel(Params p) {
  const int64_t ray = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (ray >= p.planes.n * p.rays) return;
  MissFallback<T> fallback{T(0), T(0), false};
  if (p.auto_limits) {
    const T* slot = fallback_slot<T>(p);
    fallback = MissFallback<T>{slot[0], slot[1], slot[2] > T(0)};
  }
  const S* __restrict__ planes = static_cast<const S*>(p.planes.planes);
  const auto load = [planes](int64_t offset) { return cuda::load_as<T>(planes[offset]); };
  T lo = T(INFINITY), hi = T(-INFINITY);
  render_ray_pointwise(p, ray, fallback, load, lo, hi);
  static_cast<T*>(p.scratch)[ray * 2] = lo;
  static_cast<T*>(p.scratch)[ray * 2 + 1] = hi;
}

// EG3D clamps each ray's depth to the range of all depths in the batch.
template <typename T>
__global__ void clamp_depth_kernel(Params p) {
  const T* __restrict__ ranges = static_cast<const T*>(p.scratch);
  T* __restrict__ depth = static_cast<T*>(p.depth);
  const int64_t total = p.planes.n * p.rays;
  T lo = T(INFINITY), hi = T(-INFINITY);
  for (int64_t i = threadIdx.x; i < total; i += kReduceThreads) {
    lo = nan_min(lo, ranges[i * 2]);
    hi = nan_max(hi, ranges[i * 2 + 1]);
  }
  lo = block_reduce(lo, [](T a, T b) { return nan_min(a, b); });
  hi = block_reduce(hi, [](T a, T b) { return nan_max(a, b); });
  for (int64_t i = threadIdx.x; i < total; i += kReduceThreads) depth[i] = composite_rays::final_depth(depth[i], lo, hi);
}

}  // namespace

void forward_cuda(const Params& p, int device, std::uintptr_t stream_handle) {
  const int64_t total = p.planes.n * p.rays;
  if (total == 0) return;
  cuda::DeviceGuard guard(device, "render_triplanes_cuda");
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_handle);
  const unsigned blocks = unsigned((total + kThreads - 1) / kThreads);
  cuda::with_dtype(p.planes.dtype, "render_triplanes_cuda", [&](auto s, auto t) {
    using S = decltype(s);
    using T = decltype(t);
    if (p.auto_limits) miss_fallback_kernel<T><<<1, kReduceThreads, 0, stream>>>(p);
    render_kernel<S, T><<<blocks, kThreads, 0, stream>>>(p);
    clamp_depth_kernel<T><<<1, kReduceThreads, 0, stream>>>(p);
  });
  cuda::check(cudaGetLastError(), "render_triplanes_cuda", "kernel launch failed");
}

}  // namespace render_triplanes
}  // namespace ngd
