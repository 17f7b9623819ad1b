// bias_act: y = clamp(act(x + b) * gain, -clamp, clamp), StyleGAN2-ADA semantics,
// plus its first and second derivatives. The math is shared by the CPU (OpenMP)
// and CUDA kernels; the launchers below take raw pointers and sizes only.
#pragma once

#include <cstdint>
#include <type_traits>

#include "nerfgan_distill/common.h"
#include "nerfgan_distill/vec_math.h"

namespace ngd {
namespace bias_act {

// Activation codes (Act: kLinear, kRelu, ...) and modes (Mode) are in kernel_codes.h.

// kForward: out = clamp(f(s) * gain)                 with s = x + b
// kGrad:    out = g * gain * f'(s) * pass(s)          (dL/dx given g = dL/dy)
// kGrad2:   out = g * h * gain * f''(s) * pass(s)     (d(kGrad)/ds, g = dL/d(dx), h = dL/dy)
// pass(s) is 1 where the clamp let the value through (inclusive bounds, as torch.clamp).

struct Params {
  const void* x = nullptr;  // [numel], dense in any dimension order
  const void* b = nullptr;  // [bias_size] or nullptr
  const void* g = nullptr;  // [numel], modes kGrad and kGrad2
  const void* h = nullptr;  // [numel], mode kGrad2
  void* out = nullptr;      // [numel], same layout as x
  int64_t numel = 0;
  int64_t bias_stride = 1;  // memory stride of the bias dimension
  int64_t bias_size = 1;    // length of the bias dimension
  int act = kLinear;
  int mode = kForward;
  int dtype = kFloat32;
  double alpha = 0.0;
  double gain = 1.0;
  double clamp = -1.0;      // < 0: no clamp
  int threads = 1;          // CPU only: OpenMP threads (torch.get_num_threads())
};

NGD_ISA_BEGIN

// f(s), f'(s) and f''(s) for one activation, chosen at compile time so the
// elementwise loops vectorize (a per-element switch would not; nor would libm's exp: ngd_v* are
// the vec_math.h versions).
template <int Act, typename T>
NGD_HD_INLINE void activation(T s, T alpha, T& f, T& d1, T& d2) {
  const T one = T(1), zero = T(0);
  d1 = zero;
  d2 = zero;
  // Comparisons are written so that NaN propagates as in torch (relu(NaN) = NaN).
  if constexpr (Act == kRelu) {
    f = s <= zero ? zero : s;
    d1 = s <= zero ? zero : one;
  } else if constexpr (Act == kLrelu) {
    f = s > zero ? s : s * alpha;
    d1 = s > zero ? one : alpha;
  } else if constexpr (Act == kTanh) {
    f = ngd_vtanh(s);
    // 1 - tanh^2 = 4e / (1 + e)^2 with e = exp(-2|s|): no cancellation where tanh is near +-1.
    const T e = ngd_vexp(T(-2) * (s < zero ? -s : s));
    d1 = T(4) * e / ((one + e) * (one + e));
    d2 = T(-2) * f * d1;
  } else if constexpr (Act == kSigmoid) {
    f = one / (one + ngd_vexp(-s));
    d1 = f * (one - f);
    d2 = d1 * (one - T(2) * f);
  } else if constexpr (Act == kElu) {  // torch tests s <= 0: NaN takes the positive branch
    // f' = exp(s), not expm1(s) + 1, which cancels to a few ulp of 1 for s << 0.
    const T sn = s <= zero ? s : zero;
    const T e = ngd_vexpm1(sn), u = ngd_vexp(sn);
    f = s <= zero ? e : s;
    d1 = s <= zero ? u : one;
    d2 = s <= zero ? u : zero;
  } else if constexpr (Act == kSelu) {
    const T scale = T(1.0507009873554804934193349852946);
    const T neg = T(1.6732632423543772848170429916717) * scale;
    const T sn = s <= zero ? s : zero;
    const T e = neg * ngd_vexpm1(sn), u = neg * ngd_vexp(sn);
    f = s <= zero ? e : scale * s;
    d1 = s <= zero ? u : scale;
    d2 = s <= zero ? u : zero;
  } else if constexpr (Act == kSoftplus) {
    // torch.nn.functional.softplus with beta=1, threshold=20.
    const T z = ngd_vexp(s > T(20) ? T(20) : s);
    const T sig = z / (z + one);
    f = s > T(20) ? s : ngd_vlog1p(z);
    d1 = s > T(20) ? one : sig;
    d2 = s > T(20) ? zero : sig / (z + one);
  } else if constexpr (Act == kSwish) {
    const T sig = one / (one + ngd_vexp(-s));
    f = s * sig;
    d1 = sig * (one + s * (one - sig));
    d2 = sig * (one - sig) * (T(2) + s * (one - T(2) * sig));
  } else {  // kLinear
    f = s;
    d1 = one;
  }
}

// One element of the op in compute precision T.
template <int Act, int Mode, bool HasClamp, typename T>
NGD_HD_INLINE T apply(T s, T g, T h, T alpha, T gain, T clamp) {
  T f, d1, d2;
  activation<Act, T>(s, alpha, f, d1, d2);
  const T y = f * gain;
  if constexpr (Mode == kForward) {
    if constexpr (!HasClamp) return y;
    else return y < -clamp ? -clamp : (y > clamp ? clamp : y);  // NaN passes through
  } else {
    const T grad = Mode == kGrad ? g * gain * d1 : g * h * gain * d2;
    if constexpr (!HasClamp) return grad;
    else return (y >= -clamp && y <= clamp) ? grad : T(0);
  }
}

// Calls fn(integral_constant<int, Act>, integral_constant<int, Mode>) for runtime codes,
// so launchers pick a specialized loop once per call.
template <int Mode, typename Fn>
inline void with_act(int act, Fn&& fn) {
  using M = std::integral_constant<int, Mode>;
  switch (act) {
    case kRelu: fn(std::integral_constant<int, kRelu>{}, M{}); break;
    case kLrelu: fn(std::integral_constant<int, kLrelu>{}, M{}); break;
    case kTanh: fn(std::integral_constant<int, kTanh>{}, M{}); break;
    case kSigmoid: fn(std::integral_constant<int, kSigmoid>{}, M{}); break;
    case kElu: fn(std::integral_constant<int, kElu>{}, M{}); break;
    case kSelu: fn(std::integral_constant<int, kSelu>{}, M{}); break;
    case kSoftplus: fn(std::integral_constant<int, kSoftplus>{}, M{}); break;
    case kSwish: fn(std::integral_constant<int, kSwish>{}, M{}); break;
    default: fn(std::integral_constant<int, kLinear>{}, M{}); break;
  }
}

template <typename Fn>
inline void with_act_and_mode(int act, int mode, Fn&& fn) {
  if (mode == kGrad2) with_act<kGrad2>(act, fn);
  else if (mode == kGrad) with_act<kGrad>(act, fn);
  else with_act<kForward>(act, fn);
}

// The CPU loops of one ISA (csrc/cpu/bias_act.cpp, compiled once per ISA).
void forward_cpu_isa(const Params& p);

NGD_ISA_END

// Launchers. Both validate nothing beyond what Python already did; they throw
// std::runtime_error on launch failures. forward_cpu picks the best ISA at run time.
void forward_cpu(const Params& p);
void forward_cuda(const Params& p, int device, std::uintptr_t stream);

}  // namespace bias_act
}  // namespace ngd
