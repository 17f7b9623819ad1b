// _C.SampleTriplanesParams and _C.sample_triplanes_{forward,backward}_{cpu,cuda}.
#include "nerfgan_distill/sample_triplanes.h"

#include "binding.h"

namespace ngd::bindings {
namespace {

using sample_triplanes::Params;

void check_common(const Params& p) {
  for (int64_t v : {p.n, p.m, p.c, p.h, p.w}) require(v >= 0, "sample_triplanes: sizes must be >= 0");
  for (int plane = 0; plane < 3; ++plane)
    require(p.axis_x[plane] >= 0 && p.axis_x[plane] <= 2 && p.axis_y[plane] >= 0 && p.axis_y[plane] <= 2,
            "sample_triplanes: axes must be 0, 1 or 2");
  require_dtype(p.dtype, "sample_triplanes");
  if (p.n * p.m * p.c > 0)
    require(p.planes && p.coords && p.h >= 1 && p.w >= 1,
            "sample_triplanes: planes and coords must not be null or empty");
}

void check_forward(const Params& p) {
  check_common(p);
  require(p.n * p.m * p.c == 0 || p.out, "sample_triplanes: out must not be null");
}

void check_backward(const Params& p) {
  check_common(p);
  require(p.n * p.m * p.c == 0 || p.grad_out, "sample_triplanes: grad_out must not be null");
}

}  // namespace

void bind_sample_triplanes(py::module_& m) {
  auto cls = params_class<Params>(m, "SampleTriplanesParams");
  pointer_field(cls, "planes", &Params::planes);
  pointer_field(cls, "coords", &Params::coords);
  pointer_field(cls, "out", &Params::out);
  pointer_field(cls, "grad_out", &Params::grad_out);
  pointer_field(cls, "grad_planes", &Params::grad_planes);
  pointer_field(cls, "grad_coords", &Params::grad_coords);
  array_field(cls, "axis_x", &Params::axis_x);
  array_field(cls, "axis_y", &Params::axis_y);
  cls.def_readwrite("n", &Params::n).def_readwrite("m", &Params::m).def_readwrite("c", &Params::c)
      .def_readwrite("h", &Params::h).def_readwrite("w", &Params::w)
      .def_readwrite("sp_n", &Params::sp_n).def_readwrite("sp_p", &Params::sp_p)
      .def_readwrite("sp_c", &Params::sp_c).def_readwrite("sp_h", &Params::sp_h)
      .def_readwrite("sp_w", &Params::sp_w)
      .def_readwrite("sg_n", &Params::sg_n).def_readwrite("sg_p", &Params::sg_p)
      .def_readwrite("sg_c", &Params::sg_c).def_readwrite("sg_h", &Params::sg_h)
      .def_readwrite("sg_w", &Params::sg_w)
      .def_readwrite("scale", &Params::scale).def_readwrite("dtype", &Params::dtype);
  def_launchers<Params>(m, "sample_triplanes_forward", &check_forward, &sample_triplanes::forward_cpu,
                        NGD_CUDA_LAUNCHER(sample_triplanes::forward_cuda));
  def_launchers<Params>(m, "sample_triplanes_backward", &check_backward, &sample_triplanes::backward_cpu,
                        NGD_CUDA_LAUNCHER(sample_triplanes::backward_cuda));
}

}  // namespace ngd::bindings
