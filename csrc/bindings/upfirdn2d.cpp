// _C.Upfirdn2dParams and _C.upfirdn2d_forward_{cpu,cuda} (the gradient is the same kernel
// with the filter flipped and up and down swapped).
#include "nerfgan_distill/upfirdn2d.h"

#include "binding.h"

namespace ngd::bindings {
namespace {

using upfirdn2d::Params;

void check(const Params& p) {
  for (int64_t v : {p.n, p.c, p.h, p.w, p.out_h, p.out_w}) require(v >= 0, "upfirdn2d: sizes must be >= 0");
  for (int v : {p.up_x, p.up_y, p.down_x, p.down_y}) require(v >= 1, "upfirdn2d: up and down must be >= 1");
  require(p.fh >= 1 && p.fw >= 1, "upfirdn2d: the filter must not be empty");
  require_dtype(p.dtype, "upfirdn2d");
  if (p.n * p.c * p.out_h * p.out_w > 0) require(p.x && p.f && p.out, "upfirdn2d: x, f and out must not be null");
}

}  // namespace

void bind_upfirdn2d(py::module_& m) {
  auto cls = params_class<Params>(m, "Upfirdn2dParams");
  pointer_field(cls, "x", &Params::x);
  pointer_field(cls, "f", &Params::f);
  pointer_field(cls, "out", &Params::out);
  cls.def_readwrite("n", &Params::n).def_readwrite("c", &Params::c)
      .def_readwrite("h", &Params::h).def_readwrite("w", &Params::w)
      .def_readwrite("out_h", &Params::out_h).def_readwrite("out_w", &Params::out_w)
      .def_readwrite("sx_n", &Params::sx_n).def_readwrite("sx_c", &Params::sx_c)
      .def_readwrite("sx_h", &Params::sx_h).def_readwrite("sx_w", &Params::sx_w)
      .def_readwrite("so_n", &Params::so_n).def_readwrite("so_c", &Params::so_c)
      .def_readwrite("so_h", &Params::so_h).def_readwrite("so_w", &Params::so_w)
      .def_readwrite("up_x", &Params::up_x).def_readwrite("up_y", &Params::up_y)
      .def_readwrite("down_x", &Params::down_x).def_readwrite("down_y", &Params::down_y)
      .def_readwrite("pad_x0", &Params::pad_x0).def_readwrite("pad_y0", &Params::pad_y0)
      .def_readwrite("fh", &Params::fh).def_readwrite("fw", &Params::fw)
      .def_readwrite("dtype", &Params::dtype);
  def_launchers<Params>(m, "upfirdn2d_forward", &check, &upfirdn2d::forward_cpu,
                        NGD_CUDA_LAUNCHER(upfirdn2d::forward_cuda));
}

}  // namespace ngd::bindings
