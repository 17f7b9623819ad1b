// _C.FilteredLreluParams and _C.filtered_lrelu_{forward,backward}_{cpu,cuda}: the activating pass
// (writing the sign codes) and the masked pass the gradient runs (reading them).
#include "nerfgan_distill/filtered_lrelu.h"

#include "binding.h"

namespace ngd::bindings {
namespace {

using filtered_lrelu::Params;

void check(const Params& p) {
  for (int64_t v : {p.n, p.c, p.h, p.w, p.t_h, p.t_w, p.out_h, p.out_w}) {
    require(v >= 0, "filtered_lrelu: sizes must be >= 0");
  }
  require(p.up >= 1 && p.down >= 1, "filtered_lrelu: up and down must be >= 1");
  require(p.fa_h >= 1 && p.fa_w >= 1 && p.fb_h >= 1 && p.fb_w >= 1, "filtered_lrelu: the filters must not be empty");
  require(!p.fa_separable || p.fa_h == p.fa_w, "filtered_lrelu: a separable filter has as many taps along y as x");
  require(!p.fb_separable || p.fb_h == p.fb_w, "filtered_lrelu: a separable filter has as many taps along y as x");
  require_dtype(p.dtype, "filtered_lrelu");
  if (p.n * p.c * p.out_h * p.out_w > 0) {
    require(p.x && p.fa && p.fb && p.out, "filtered_lrelu: x, fa, fb and out must not be null");
  }
}

void check_backward(const Params& p) {
  check(p);
  require(p.b == nullptr, "filtered_lrelu_backward: takes no bias");
  if (p.n * p.c * p.t_h * p.t_w > 0) require(p.codes != nullptr, "filtered_lrelu_backward: needs the codes");
}

}  // namespace

void bind_filtered_lrelu(py::module_& m) {
  auto cls = params_class<Params>(m, "FilteredLreluParams");
  pointer_field(cls, "x", &Params::x);
  pointer_field(cls, "b", &Params::b);
  pointer_field(cls, "fa", &Params::fa);
  pointer_field(cls, "fb", &Params::fb);
  pointer_field(cls, "out", &Params::out);
  pointer_field(cls, "codes", &Params::codes);
  cls.def_readwrite("n", &Params::n).def_readwrite("c", &Params::c)
      .def_readwrite("h", &Params::h).def_readwrite("w", &Params::w)
      .def_readwrite("t_h", &Params::t_h).def_readwrite("t_w", &Params::t_w)
      .def_readwrite("out_h", &Params::out_h).def_readwrite("out_w", &Params::out_w)
      .def_readwrite("sx_n", &Params::sx_n).def_readwrite("sx_c", &Params::sx_c)
      .def_readwrite("sx_h", &Params::sx_h).def_readwrite("sx_w", &Params::sx_w)
      .def_readwrite("so_n", &Params::so_n).def_readwrite("so_c", &Params::so_c)
      .def_readwrite("so_h", &Params::so_h).def_readwrite("so_w", &Params::so_w)
      .def_readwrite("up", &Params::up).def_readwrite("pad_ax0", &Params::pad_ax0)
      .def_readwrite("pad_ay0", &Params::pad_ay0).def_readwrite("fa_h", &Params::fa_h)
      .def_readwrite("fa_w", &Params::fa_w).def_readwrite("fa_separable", &Params::fa_separable)
      .def_readwrite("down", &Params::down).def_readwrite("pad_bx0", &Params::pad_bx0)
      .def_readwrite("pad_by0", &Params::pad_by0).def_readwrite("fb_h", &Params::fb_h)
      .def_readwrite("fb_w", &Params::fb_w).def_readwrite("fb_separable", &Params::fb_separable)
      .def_readwrite("gain", &Params::gain).def_readwrite("slope", &Params::slope)
      .def_readwrite("clamp", &Params::clamp).def_readwrite("dtype", &Params::dtype);
  def_launchers<Params>(m, "filtered_lrelu_forward", &check, &filtered_lrelu::forward_cpu,
                        NGD_CUDA_LAUNCHER(filtered_lrelu::forward_cuda));
  def_launchers<Params>(m, "filtered_lrelu_backward", &check_backward, &filtered_lrelu::backward_cpu,
                        NGD_CUDA_LAUNCHER(filtered_lrelu::backward_cuda));
}

}  // namespace ngd::bindings
