// Picks the CPU kernels' ISA at run time: AVX2 where the processor has it (and the
// build made that copy), else the baseline. NERFGAN_DISTILL_CPU_ISA=baseline forces the
// baseline, so tests can compare the two.
#include <cstdlib>
#include <cstring>

#include "nerfgan_distill/bias_act.h"
#include "nerfgan_distill/composite_rays.h"
#include "nerfgan_distill/filtered_lrelu.h"
#include "nerfgan_distill/modulated_conv2d.h"
#include "nerfgan_distill/render_triplanes.h"
#include "nerfgan_distill/sample_triplanes.h"
#include "nerfgan_distill/upfirdn2d.h"

namespace ngd {
namespace {

bool use_avx2() {
#if defined(NGD_HAVE_AVX2_KERNELS) && (defined(__x86_64__) || defined(__i386__))
  static const bool chosen = [] {
    const char* forced = std::getenv("NERFGAN_DISTILL_CPU_ISA");
    if (forced && std::strcmp(forced, "baseline") == 0) return false;
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return chosen;
#else
  return false;
#endif
}

template <typename Params>
void run_best(const Params& p, void (*baseline)(const Params&), void (*avx2)(const Params&)) {
#ifdef NGD_HAVE_AVX2_KERNELS
  if (use_avx2()) return avx2(p);
#else
  (void)avx2;
#endif
  baseline(p);
}

}  // namespace

const char* cpu_isa() { return use_avx2() ? "avx2" : "baseline"; }

// Each op's kernels exist once per ISA namespace (NGD_ISA in common.h).
namespace bias_act {
namespace baseline { void forward_cpu_isa(const Params& p); }
namespace avx2 { void forward_cpu_isa(const Params& p); }
void forward_cpu(const Params& p) { run_best(p, &baseline::forward_cpu_isa, &avx2::forward_cpu_isa); }
}  // namespace bias_act

namespace upfirdn2d {
namespace baseline { void forward_cpu_isa(const Params& p); }
namespace avx2 { void forward_cpu_isa(const Params& p); }
void forward_cpu(const Params& p) { run_best(p, &baseline::forward_cpu_isa, &avx2::forward_cpu_isa); }
}  // namespace upfirdn2d

namespace filtered_lrelu {
namespace baseline { void forward_cpu_isa(const Params& p); void backward_cpu_isa(const Params& p); }
namespace avx2 { void forward_cpu_isa(const Params& p); void backward_cpu_isa(const Params& p); }
void forward_cpu(const Params& p) { run_best(p, &baseline::forward_cpu_isa, &avx2::forward_cpu_isa); }
void backward_cpu(const Params& p) { run_best(p, &baseline::backward_cpu_isa, &avx2::backward_cpu_isa); }
}  // namespace filtered_lrelu

namespace sample_triplanes {
namespace baseline { void forward_cpu_isa(const Params& p); void backward_cpu_isa(const Params& p); }
namespace avx2 { void forward_cpu_isa(const Params& p); void backward_cpu_isa(const Params& p); }
void forward_cpu(const Params& p) { run_best(p, &baseline::forward_cpu_isa, &avx2::forward_cpu_isa); }
void backward_cpu(const Params& p) { run_best(p, &baseline::backward_cpu_isa, &avx2::backward_cpu_isa); }
}  // namespace sample_triplanes

namespace composite_rays {
namespace baseline { void forward_cpu_isa(const Params& p); void backward_cpu_isa(const Params& p); }
namespace avx2 { void forward_cpu_isa(const Params& p); void backward_cpu_isa(const Params& p); }
void forward_cpu(const Params& p) { run_best(p, &baseline::forward_cpu_isa, &avx2::forward_cpu_isa); }
void backward_cpu(const Params& p) { run_best(p, &baseline::backward_cpu_isa, &avx2::backward_cpu_isa); }
}  // namespace composite_rays

namespace render_triplanes {
namespace baseline { void forward_cpu_isa(const Params& p); }
namespace avx2 { void forward_cpu_isa(const Params& p); }
void forward_cpu(const Params& p) { run_best(p, &baseline::forward_cpu_isa, &avx2::forward_cpu_isa); }
}  // namespace render_triplanes

namespace modulated_conv2d {
namespace baseline {
void forward_cpu_isa(const Params& p);
void weight_grad_cpu_isa(const WeightGradParams& p);
}  // namespace baseline
namespace avx2 {
void forward_cpu_isa(const Params& p);
void weight_grad_cpu_isa(const WeightGradParams& p);
}  // namespace avx2
void forward_cpu(const Params& p) { run_best(p, &baseline::forward_cpu_isa, &avx2::forward_cpu_isa); }
void weight_grad_cpu(const WeightGradParams& p) {
  run_best(p, &baseline::weight_grad_cpu_isa, &avx2::weight_grad_cpu_isa);
}
}  // namespace modulated_conv2d

}  // namespace ngd
