// importance_depths on the CPU: one ray per iteration, its cdf in a per-thread stack
// buffer, with render_triplanes.h's per-ray math (what the fused renderer runs). Scalar code with
// no ISA-specific paths, so it is compiled once (not per ISA like NGD_CPU_KERNELS).
#include <stdexcept>

#include "nerfgan_distill/importance_depths.h"

namespace ngd {
namespace importance_depths {
namespace {

using namespace render_triplanes;  // the per-ray math and kMaxSamples

template <typename T>
void importance_forward(const Params& p) {
  const T* depths = static_cast<const T*>(p.depths);
  const T* weights = static_cast<const T*>(p.weights);
  const T* u = static_cast<const T*>(p.u);
  T* out = static_cast<T*>(p.out);
  const int64_t d = p.coarse, di = p.fine, k_count = pdf_size(d);
#pragma omp parallel for num_threads(p.threads) schedule(static) if (p.rays * (d + di) >= 8192)
  for (int64_t r = 0; r < p.rays; ++r) {
    T cdf[kMaxSamples];
    importance_cdf(weights + r * (d - 1), d, cdf);
    for (int64_t j = 0; j < di; ++j)
      out[r * di + j] = importance_depth(depths + r * d, cdf, k_count, u[r * di + j]);
  }
}

}  // namespace

void forward_cpu(const Params& p) {
  if (p.dtype == kFloat32) return importance_forward<float>(p);
  if (p.dtype == kFloat64) return importance_forward<double>(p);
  throw std::invalid_argument("importance_depths_cpu: dtype must be float32 or float64");
}

}  // namespace importance_depths
}  // namespace ngd
