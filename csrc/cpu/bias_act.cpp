// bias_act on the CPU: OpenMP over runs of elements that share one bias entry.
// Compiled once per CPU ISA (NGD_ISA); csrc/cpu/cpu_dispatch.cpp picks one at run time.
#include "nerfgan_distill/bias_act.h"
#include "nerfgan_distill/host_half.h"

namespace ngd {
namespace bias_act {
NGD_ISA_BEGIN
namespace {

template <int Act, int Mode, bool HasClamp, typename S, typename T>
void run(const Params& p) {
  const S* x = static_cast<const S*>(p.x);
  const S* b = static_cast<const S*>(p.b);
  const S* g = static_cast<const S*>(p.g);
  const S* h = static_cast<const S*>(p.h);
  S* out = static_cast<S*>(p.out);
  const T alpha = T(p.alpha), gain = T(p.gain), clamp = T(p.clamp);
  // In a dense layout the element at offset o has bias index (o / stride) % size,
  // so every run [k * stride, (k + 1) * stride) shares one bias value.
  const int64_t run_length = b ? p.bias_stride : p.numel;
  const int64_t runs = run_length > 0 ? p.numel / run_length : 0;
#pragma omp parallel for schedule(static) num_threads(p.threads) if (p.numel >= 32768)
  for (int64_t k = 0; k < runs; ++k) {
    const T bias = b ? load_as<T>(b[k % p.bias_size]) : T(0);
    const int64_t begin = k * run_length;
    const S* xk = x + begin;
    S* ok = out + begin;
    if constexpr (Mode == kForward) {
      for (int64_t i = 0; i < run_length; ++i)
        ok[i] = StoreAs<S>::from(apply<Act, Mode, HasClamp, T>(load_as<T>(xk[i]) + bias, T(0), T(0), alpha, gain, clamp));
    } else if constexpr (Mode == kGrad) {
      const S* gk = g + begin;
      for (int64_t i = 0; i < run_length; ++i)
        ok[i] = StoreAs<S>::from(apply<Act, Mode, HasClamp, T>(load_as<T>(xk[i]) + bias, load_as<T>(gk[i]), T(0), alpha, gain, clamp));
    } else {
      const S* gk = g + begin;
      const S* hk = h + begin;
      for (int64_t i = 0; i < run_length; ++i)
        ok[i] = StoreAs<S>::from(apply<Act, Mode, HasClamp, T>(load_as<T>(xk[i]) + bias, load_as<T>(gk[i]), load_as<T>(hk[i]), alpha, gain, clamp));
    }
  }
}

template <typename S, typename T>
void run_typed(const Params& p) {
  with_act_and_mode(p.act, p.mode, [&](auto act, auto mode) {
    constexpr int kAct = decltype(act)::value, kMode = decltype(mode)::value;
    if (p.clamp >= 0) run<kAct, kMode, true, S, T>(p);
    else run<kAct, kMode, false, S, T>(p);
  });
}

}  // namespace

void forward_cpu_isa(const Params& p) {
  with_host_dtype(p.dtype, "bias_act_cpu", [&](auto s, auto t) { run_typed<decltype(s), decltype(t)>(p); });
}

NGD_ISA_END
}  // namespace bias_act
}  // namespace ngd
