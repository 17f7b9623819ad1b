// The nerfgan_distill._C module: torch-free entry points, one bind_<op> per op (the
// pattern is in binding.h), plus what the module was built with and the shared codes it
// was compiled with (tests compare them with nerfgan_distill/kernel_codes.py).
#include <string>

#include "nerfgan_distill/kernel_codes.h"

#include "binding.h"

#ifdef NGD_WITH_CUDA
#include <cuda_runtime_api.h>  // CUDART_VERSION only; no runtime call happens at import
#endif

#ifndef NGD_CUDA_ARCHS
#define NGD_CUDA_ARCHS ""
#endif
#ifndef NGD_CUDA_SKIP_REASON
#define NGD_CUDA_SKIP_REASON ""
#endif
#ifndef NGD_VERSION
#define NGD_VERSION "unknown"
#endif

namespace ngd::bindings {
namespace {

py::dict build_info() {
  py::dict info;
  info["version"] = NGD_VERSION;
#ifdef NGD_WITH_CUDA
  info["cuda"] = true;
  info["cuda_version"] = std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
  info["cuda_archs"] = NGD_CUDA_ARCHS;
#else
  info["cuda"] = false;
  info["cuda_skip_reason"] = NGD_CUDA_SKIP_REASON;
#endif
  info["cpu_isa"] = cpu_isa();
#ifdef _OPENMP
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
#if defined(__clang__)
  info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = std::string("gcc ") + __VERSION__;
#else
  info["compiler"] = "unknown";
#endif
  return info;
}

// The codes as the kernels were compiled, spelt as kernel_codes.py spells them. Listed by
// hand on purpose: a code added there and not here (or a stale build) fails the test.
py::dict compiled_codes() {
  py::dict dtype, act, mode, pass, sign, limits, codes;
  dtype["float32"] = int(kFloat32);
  dtype["float64"] = int(kFloat64);
  dtype["float16"] = int(kFloat16);
  dtype["bfloat16"] = int(kBFloat16);
  using namespace bias_act;
  act["linear"] = int(kLinear);
  act["relu"] = int(kRelu);
  act["lrelu"] = int(kLrelu);
  act["tanh"] = int(kTanh);
  act["sigmoid"] = int(kSigmoid);
  act["elu"] = int(kElu);
  act["selu"] = int(kSelu);
  act["softplus"] = int(kSoftplus);
  act["swish"] = int(kSwish);
  mode["forward"] = int(kForward);
  mode["grad"] = int(kGrad);
  mode["grad2"] = int(kGrad2);
  pass["activate"] = int(filtered_lrelu::kActivate);
  pass["masked"] = int(filtered_lrelu::kMasked);
  sign["positive"] = int(filtered_lrelu::kPositive);
  sign["negative"] = int(filtered_lrelu::kNegative);
  sign["clamped"] = int(filtered_lrelu::kClamped);
  limits["MaxSamples"] = render_triplanes::kMaxSamples;
  limits["CudaMaxChannels"] = render_triplanes::kCudaMaxChannels;
  limits["CudaMaxOutputs"] = render_triplanes::kCudaMaxOutputs;
  codes["DType"] = dtype;
  codes["Act"] = act;
  codes["Mode"] = mode;
  codes["Pass"] = pass;
  codes["Sign"] = sign;
  codes["limits"] = limits;
  return codes;
}

}  // namespace
}  // namespace ngd::bindings

PYBIND11_MODULE(_C, m) {
  using namespace ngd::bindings;
  m.doc() = "nerfgan_distill native core (torch-free)";
  m.def("build_info", &build_info, "What this module was built with.");
  m.def("compiled_codes", &compiled_codes, "The shared codes as the kernels were compiled (kernel_codes.py).");
  bind_bias_act(m);
  bind_upfirdn2d(m);
  bind_filtered_lrelu(m);
  bind_sample_triplanes(m);  // before render_triplanes: its params hold a SampleTriplanesParams
  bind_composite_rays(m);
  bind_render_triplanes(m);
  bind_importance_depths(m);
  bind_modulated_conv2d(m);
}
