// sample_triplanes on CUDA.
// Forward: one thread per output element (point, plane, channel), channels fastest, so
// with channels-last planes a warp reads each tap's channels as one contiguous run.
// Coordinates gradient: one thread per point. Planes gradient: one thread per
// (plane, channel, run of kRun consecutive points); consecutive points are consecutive
// samples of a ray and often share their texels (a frontal ray barely moves on the XY
// plane), so a thread merges equal taps before its atomicAdds, which cuts the traffic
// on hot texels.
#include <algorithm>

#include "nerfgan_distill/cuda_utils.cuh"
#include "nerfgan_distill/sample_triplanes.h"

namespace ngd {
namespace sample_triplanes {
namespace {

constexpr int kThreads = 256;
constexpr int kRun = 8;  // points per planes-gradient thread

unsigned blocks_for(int64_t total) {
  return unsigned(std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(1) << 20));
}

template <typename S, typename T>
__global__ void forward_kernel(Params p) {
  const S* __restrict__ planes = static_cast<const S*>(p.planes);
  const T* __restrict__ coords = static_cast<const T*>(p.coords);
  S* __restrict__ out = static_cast<S*>(p.out);
  const auto load = [planes](int64_t offset) { return cuda::load_as<T>(planes[offset]); };
  const int64_t total = p.n * 3 * p.m * p.c;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t ch = i % p.c;
    const int64_t m = (i / p.c) % p.m;
    const int plane = int((i / (p.c * p.m)) % 3);
    const int64_t n = i / (p.c * p.m * 3);
    const Taps<T> taps = point_taps(p, coords, n, m, plane);
    T v[4];
    gather(taps, n * p.sp_n + plane * p.sp_p + ch * p.sp_c, p.sp_h, p.sp_w, load, v);
    out[i] = cuda::StoreAs<S>::from(taps.finite ? blend(taps, v) : T(NAN));
  }
}

template <typename S, typename T>
__global__ void coords_grad_kernel(Params p) {
  const S* __restrict__ planes = static_cast<const S*>(p.planes);
  const T* __restrict__ coords = static_cast<const T*>(p.coords);
  const S* __restrict__ grad_out = static_cast<const S*>(p.grad_out);
  T* __restrict__ grad = static_cast<T*>(p.grad_coords);
  const auto load = [planes](int64_t offset) { return cuda::load_as<T>(planes[offset]); };
  const int64_t points = p.n * p.m;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < points; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t n = i / p.m, m = i % p.m;
    T g[3] = {T(0), T(0), T(0)};
    for (int plane = 0; plane < 3; ++plane) {
      const Taps<T> taps = point_taps(p, coords, n, m, plane);
      if (!taps.finite) {
        add_coord_grad(p, plane, false, T(0), T(0), g);
        continue;
      }
      const S* go = grad_out + ((n * 3 + plane) * p.m + m) * p.c;
      const int64_t base = n * p.sp_n + plane * p.sp_p;
      T sum_x = T(0), sum_y = T(0);
      for (int64_t ch = 0; ch < p.c; ++ch) {
        T v[4], d_ix, d_iy;
        gather(taps, base + ch * p.sp_c, p.sp_h, p.sp_w, load, v);
        blend_grad(taps, v, d_ix, d_iy);
        const T gy = cuda::load_as<T>(go[ch]);
        sum_x += d_ix * gy;
        sum_y += d_iy * gy;
      }
      add_coord_grad(p, plane, true, sum_x, sum_y, g);
    }
    for (int a = 0; a < 3; ++a) grad[i * 3 + a] = g[a];
  }
}

template <typename T>
struct PendingTaps {
  int64_t x0 = 0, y0 = 0;
  bool active = false, valid[4] = {false, false, false, false};
  T sum[4] = {T(0), T(0), T(0), T(0)};
};

template <typename T>
__device__ void flush(PendingTaps<T>& pend, T* slice, const Params& p) {
  if (!pend.active) return;
  const int64_t row0 = pend.y0 * p.sg_h, col0 = pend.x0 * p.sg_w;
  const int64_t offsets[4] = {row0 + col0, row0 + col0 + p.sg_w, row0 + p.sg_h + col0, row0 + p.sg_h + col0 + p.sg_w};
  for (int k = 0; k < 4; ++k)
    if (pend.valid[k]) atomicAdd(slice + offsets[k], pend.sum[k]);
  pend.active = false;
}

template <typename S, typename T>
__global__ void planes_grad_kernel(Params p) {
  const T* __restrict__ coords = static_cast<const T*>(p.coords);
  const S* __restrict__ grad_out = static_cast<const S*>(p.grad_out);
  T* grad = static_cast<T*>(p.grad_planes);
  const int64_t runs = (p.m + kRun - 1) / kRun;
  const int64_t total = p.n * 3 * runs * p.c;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t ch = i % p.c;
    const int64_t run = (i / p.c) % runs;
    const int plane = int((i / (p.c * runs)) % 3);
    const int64_t n = i / (p.c * runs * 3);
    T* slice = grad + n * p.sg_n + plane * p.sg_p + ch * p.sg_c;
    PendingTaps<T> pend;
    const int64_t m1 = min(p.m, (run + 1) * kRun);
    for (int64_t m = run * kRun; m < m1; ++m) {
      const Taps<T> t = point_taps(p, coords, n, m, plane);
      if (!t.finite) continue;
      const T gy = cuda::load_as<T>(grad_out[((n * 3 + plane) * p.m + m) * p.c + ch]);
      if (pend.active && (pend.x0 != t.x0 || pend.y0 != t.y0)) flush(pend, slice, p);
      if (!pend.active) {
        pend.active = true;
        pend.x0 = t.x0;
        pend.y0 = t.y0;
        pend.valid[0] = t.valid_y0 && t.valid_x0;
        pend.valid[1] = t.valid_y0 && t.valid_x1;
        pend.valid[2] = t.valid_y1 && t.valid_x0;
        pend.valid[3] = t.valid_y1 && t.valid_x1;
        pend.sum[0] = pend.sum[1] = pend.sum[2] = pend.sum[3] = T(0);
      }
      pend.sum[0] += t.wy0 * t.wx0 * gy;
      pend.sum[1] += t.wy0 * t.wx1 * gy;
      pend.sum[2] += t.wy1 * t.wx0 * gy;
      pend.sum[3] += t.wy1 * t.wx1 * gy;
    }
    flush(pend, slice, p);
  }
}

}  // namespace

void forward_cuda(const Params& p, int device, std::uintptr_t stream_handle) {
  const int64_t total = p.n * 3 * p.m * p.c;
  if (total == 0) return;
  cuda::DeviceGuard guard(device, "sample_triplanes_cuda");
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_handle);
  cuda::with_dtype(p.dtype, "sample_triplanes_cuda", [&](auto s, auto t) {
    forward_kernel<decltype(s), decltype(t)><<<blocks_for(total), kThreads, 0, stream>>>(p);
  });
  cuda::check(cudaGetLastError(), "sample_triplanes_cuda", "kernel launch failed");
}

void backward_cuda(const Params& p, int device, std::uintptr_t stream_handle) {
  if (p.n * p.m * p.c == 0) return;
  cuda::DeviceGuard guard(device, "sample_triplanes_cuda");
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_handle);
  cuda::with_dtype(p.dtype, "sample_triplanes_cuda", [&](auto s, auto t) {
    using S = decltype(s);
    using T = decltype(t);
    if (p.grad_coords) coords_grad_kernel<S, T><<<blocks_for(p.n * p.m), kThreads, 0, stream>>>(p);
    if (p.grad_planes) {
      const int64_t total = p.n * 3 * ((p.m + kRun - 1) / kRun) * p.c;
      planes_grad_kernel<S, T><<<blocks_for(total), kThreads, 0, stream>>>(p);
    }
  });
  cuda::check(cudaGetLastError(), "sample_triplanes_cuda", "kernel launch failed");
}

}  // namespace sample_triplanes
}  // namespace ngd
