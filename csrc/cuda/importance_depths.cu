// importance_depths on CUDA: one thread per ray, its cdf in local memory, with render_triplanes.h's
// per-ray math (what the fused renderer's kernel runs).
#include <stdexcept>

#include "nerfgan_distill/cuda_utils.cuh"
#include "nerfgan_distill/importance_depths.h"

namespace ngd {
namespace importance_depths {
namespace {

using namespace render_triplanes;  // the per-ray math and kMaxSamples

constexpr int kImportanceThreads = 128;  // rays per block

template <typename T>
__global__ void __launch_bounds__(kImportanceThreads) importance_kernel(Params p) {
  const int64_t r = int64_t(blockIdx.x) * kImportanceThreads + threadIdx.x;
  if (r >= p.rays) return;
  const T* __restrict__ depths = static_cast<const T*>(p.depths) + r * p.coarse;
  const T* __restrict__ weights = static_cast<const T*>(p.weights) + r * (p.coarse - 1);
  const T* __restrict__ u = static_cast<const T*>(p.u) + r * p.fine;
  T* __restrict__ out = static_cast<T*>(p.out) + r * p.fine;
  T cdf[kMaxSamples];
  importance_cdf(weights, p.coarse, cdf);
  const int64_t k_count = pdf_size(p.coarse);
  for (int64_t j = 0; j < p.fine; ++j) out[j] = importance_depth(depths, cdf, k_count, u[j]);
}

}  // namespace

void forward_cuda(const Params& p, int device, std::uintptr_t stream_handle) {
  if (p.rays == 0 || p.fine == 0) return;
  if (p.dtype != kFloat32 && p.dtype != kFloat64)
    throw std::invalid_argument("importance_depths_cuda: dtype must be float32 or float64");
  cuda::DeviceGuard guard(device, "importance_depths_cuda");
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_handle);
  const unsigned blocks = unsigned((p.rays + kImportanceThreads - 1) / kImportanceThreads);
  if (p.dtype == kFloat32)
    importance_kernel<float><<<blocks, kImportanceThreads, 0, stream>>>(p);
  else
    importance_kernel<double><<<blocks, kImportanceThreads, 0, stream>>>(p);
  cuda::check(cudaGetLastError(), "importance_depths_cuda", "kernel launch failed");
}

}  // namespace importance_depths
}  // namespace ngd
