// _C.BiasActParams and _C.bias_act_forward_{cpu,cuda} (every mode: forward, grad, grad2).
#include "nerfgan_distill/bias_act.h"

#include "binding.h"

namespace ngd::bindings {
namespace {

using bias_act::Params;

void check(const Params& p) {
  require(p.numel >= 0 && p.bias_stride >= 1 && p.bias_size >= 1,
          "bias_act: numel must be >= 0, bias_stride and bias_size >= 1");
  require(p.act >= 0 && p.act < bias_act::kNumActs, "bias_act: unknown activation code");
  require(p.mode >= 0 && p.mode < bias_act::kNumModes, "bias_act: unknown mode");
  require_dtype(p.dtype, "bias_act");
  if (p.numel == 0) return;
  require(p.x && p.out, "bias_act: x and out must not be null");
  require(p.mode == bias_act::kForward || p.g, "bias_act: g must not be null");
  require(p.mode != bias_act::kGrad2 || p.h, "bias_act: h must not be null");
}

}  // namespace

void bind_bias_act(py::module_& m) {
  auto cls = params_class<Params>(m, "BiasActParams");
  pointer_field(cls, "x", &Params::x);
  pointer_field(cls, "b", &Params::b);
  pointer_field(cls, "g", &Params::g);
  pointer_field(cls, "h", &Params::h);
  pointer_field(cls, "out", &Params::out);
  cls.def_readwrite("numel", &Params::numel)
      .def_readwrite("bias_stride", &Params::bias_stride)
      .def_readwrite("bias_size", &Params::bias_size)
      .def_readwrite("act", &Params::act)
      .def_readwrite("mode", &Params::mode)
      .def_readwrite("dtype", &Params::dtype)
      .def_readwrite("alpha", &Params::alpha)
      .def_readwrite("gain", &Params::gain)
      .def_readwrite("clamp", &Params::clamp);
  def_launchers<Params>(m, "bias_act_forward", &check, &bias_act::forward_cpu,
                        NGD_CUDA_LAUNCHER(bias_act::forward_cuda));
}

}  // namespace ngd::bindings
