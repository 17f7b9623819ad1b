// upfirdn2d on CUDA: one thread per output pixel over the shared output_pixel math.
// A first, simple kernel: taps are read straight from global memory (through L1/L2).
// Shared-memory tiling for the bandwidth target is future work, to be done on a GPU.
#include <algorithm>
#include <stdexcept>

#include "nerfgan_distill/cuda_utils.cuh"
#include "nerfgan_distill/upfirdn2d.h"

namespace ngd {
namespace upfirdn2d {
namespace {

template <typename S, typename T>
__global__ void upfirdn2d_kernel(Params p) {
  const S* __restrict__ x = static_cast<const S*>(p.x);
  const T* __restrict__ f = static_cast<const T*>(p.f);
  S* __restrict__ out = static_cast<S*>(p.out);
  const int64_t total = p.n * p.c * p.out_h * p.out_w;
  const auto load = [x](int64_t offset) { return cuda::load_as<T>(x[offset]); };
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
    const int64_t ox = i % p.out_w;
    int64_t rest = i / p.out_w;
    const int64_t oy = rest % p.out_h;
    rest /= p.out_h;
    const int64_t c = rest % p.c, n = rest / p.c;
    const T value = output_pixel<T>(p, f, n * p.sx_n + c * p.sx_c, oy, ox, load);
    out[n * p.so_n + c * p.so_c + oy * p.so_h + ox * p.so_w] = cuda::StoreAs<S>::from(value);
  }
}

template <typename S, typename T>
void launch_typed(const Params& p, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t total = p.n * p.c * p.out_h * p.out_w;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(1) << 20);
  upfirdn2d_kernel<S, T><<<unsigned(blocks), kThreads, 0, stream>>>(p);
  cuda::check(cudaGetLastError(), "upfirdn2d_cuda", "kernel launch failed");
}

}  // namespace

void forward_cuda(const Params& p, int device, std::uintptr_t stream_handle) {
  if (p.n * p.c * p.out_h * p.out_w == 0) return;
  cuda::DeviceGuard guard(device, "upfirdn2d_cuda");
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_handle);
  cuda::with_dtype(p.dtype, "upfirdn2d_cuda", [&](auto s, auto t) {
    launch_typed<decltype(s), decltype(t)>(p, stream);
  });
}

}  // namespace upfirdn2d
}  // namespace ngd
