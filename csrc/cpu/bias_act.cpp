// bias_act on the CPU: OpenMP over unit-stride spans of elements (see run for how they are cut).
// Compiled once per CPU ISA (NGD_ISA); csrc/cpu/cpu_dispatch.cpp picks one at run time.
#include <algorithm>

#include "nerfgan_distill/bias_act.h"
#include "nerfgan_distill/host_half.h"

namespace ngd {
namespace bias_act {
NGD_ISA_BEGIN
namespace {

constexpr int64_t kChunk = 16384;  // elements per task where no bias index splits the work

// Elements [begin, begin + n) with bias bias_at(i) for the i-th of them.
template <int Act, int Mode, bool HasClamp, typename S, typename T, typename BiasAt>
inline void span(const Params& p, int64_t begin, int64_t n, BiasAt bias_at) {
  const S* xk = static_cast<const S*>(p.x) + begin;
  S* ok = static_cast<S*>(p.out) + begin;
  const T alpha = T(p.alpha), gain = T(p.gain), clamp = T(p.clamp);
  if constexpr (Mode == kForward) {
    for (int64_t i = 0; i < n; ++i)
      ok[i] = StoreAs<S>::from(apply<Act, Mode, HasClamp, T>(load_as<T>(xk[i]) + bias_at(i), T(0), T(0), alpha, gain, clamp));
  } else if constexpr (Mode == kGrad) {
    const S* gk = static_cast<const S*>(p.g) + begin;
    for (int64_t i = 0; i < n; ++i)
      ok[i] = StoreAs<S>::from(apply<Act, Mode, HasClamp, T>(load_as<T>(xk[i]) + bias_at(i), load_as<T>(gk[i]), T(0), alpha, gain, clamp));
  } else {
    const S* gk = static_cast<const S*>(p.g) + begin;
    const S* hk = static_cast<const S*>(p.h) + begin;
    for (int64_t i = 0; i < n; ++i)
      ok[i] = StoreAs<S>::from(apply<Act, Mode, HasClamp, T>(load_as<T>(xk[i]) + bias_at(i), load_as<T>(gk[i]), load_as<T>(hk[i]), alpha, gain, clamp));
  }
}

// In a dense layout the element at offset o has bias index (o / stride) % size. Three shapes
// of work, so every task is a long unit-stride loop the compiler vectorises:
// - one bias value for all (no bias, or size 1): fixed-size chunks;
// - the bias dimension innermost (stride 1, e.g. [N, C] with dim=1): whole rows of `size`;
// - otherwise: runs of `stride` elements that share one bias value.
template <int Act, int Mode, bool HasClamp, typename S, typename T>
void run(const Params& p) {
  const S* b = static_cast<const S*>(p.b);
  const bool parallel = p.numel >= 32768;
  if (!b || p.bias_size == 1) {
    const T bias = b ? load_as<T>(b[0]) : T(0);
    const int64_t chunks = (p.numel + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(p.threads) if (parallel)
    for (int64_t k = 0; k < chunks; ++k) {
      const int64_t begin = k * kChunk;
      span<Act, Mode, HasClamp, S, T>(p, begin, std::min(kChunk, p.numel - begin), [bias](int64_t) { return bias; });
    }
  } else if (p.bias_stride == 1) {
    const int64_t rows = p.numel / p.bias_size;
#pragma omp parallel for schedule(static) num_threads(p.threads) if (parallel)
    for (int64_t r = 0; r < rows; ++r)
      span<Act, Mode, HasClamp, S, T>(p, r * p.bias_size, p.bias_size, [b](int64_t i) { return load_as<T>(b[i]); });
  } else {
    const int64_t runs = p.numel / p.bias_stride;
#pragma omp parallel for schedule(static) num_threads(p.threads) if (parallel)
    for (int64_t k = 0; k < runs; ++k) {
      const T bias = load_as<T>(b[k % p.bias_size]);
      span<Act, Mode, HasClamp, S, T>(p, k * p.bias_stride, p.bias_stride, [bias](int64_t) { return bias; });
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
