// bias_act on CUDA: a grid-stride elementwise kernel, 32-bit indexing when it fits.
#include <algorithm>
#include <stdexcept>

#include "nerfgan_distill/bias_act.h"
#include "nerfgan_distill/cuda_utils.cuh"

namespace ngd {
namespace bias_act {
namespace {

using cuda::load_as;
using cuda::StoreAs;

template <int Act, int Mode, bool HasClamp, typename S, typename T, typename Index>
__device__ __forceinline__ void bias_act_loop(const Params& p) {
  const S* __restrict__ x = static_cast<const S*>(p.x);
  const S* __restrict__ b = static_cast<const S*>(p.b);
  const S* __restrict__ g = static_cast<const S*>(p.g);
  const S* __restrict__ h = static_cast<const S*>(p.h);
  S* __restrict__ out = static_cast<S*>(p.out);
  const T alpha = T(p.alpha), gain = T(p.gain), clamp = T(p.clamp);
  const Index numel = Index(p.numel), stride = Index(p.bias_stride), size = Index(p.bias_size);
  const Index step = Index(blockDim.x) * Index(gridDim.x);
  for (Index i = Index(blockIdx.x) * Index(blockDim.x) + Index(threadIdx.x); i < numel; i += step) {
    T s = load_as<T>(x[i]);
    if (b) s += load_as<T>(b[(i / stride) % size]);
    const T gi = Mode != kForward ? load_as<T>(g[i]) : T(0);
    const T hi = Mode == kGrad2 ? load_as<T>(h[i]) : T(0);
    out[i] = StoreAs<S>::from(apply<Act, Mode, HasClamp, T>(s, gi, hi, alpha, gain, clamp));
  }
}

template <int Act, int Mode, typename S, typename T, typename Index>
__global__ void bias_act_kernel(Params p) {
  if (p.clamp >= 0) bias_act_loop<Act, Mode, true, S, T, Index>(p);  // uniform branch
  else bias_act_loop<Act, Mode, false, S, T, Index>(p);
}

template <typename S, typename T>
void launch_typed(const Params& p, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((p.numel + kThreads - 1) / kThreads, int64_t(1) << 20);
  with_act_and_mode(p.act, p.mode, [&](auto act, auto mode) {
    constexpr int kAct = decltype(act)::value, kMode = decltype(mode)::value;
    if (p.numel <= INT32_MAX) {
      bias_act_kernel<kAct, kMode, S, T, int32_t><<<unsigned(blocks), kThreads, 0, stream>>>(p);
    } else {
      bias_act_kernel<kAct, kMode, S, T, int64_t><<<unsigned(blocks), kThreads, 0, stream>>>(p);
    }
  });
  cuda::check(cudaGetLastError(), "bias_act_cuda", "kernel launch failed");
}

}  // namespace

void forward_cuda(const Params& p, int device, std::uintptr_t stream_handle) {
  if (p.numel == 0) return;
  cuda::DeviceGuard guard(device, "bias_act_cuda");
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_handle);
  cuda::with_dtype(p.dtype, "bias_act_cuda", [&](auto s, auto t) {
    launch_typed<decltype(s), decltype(t)>(p, stream);
  });
}

}  // namespace bias_act
}  // namespace ngd
