// _C.CompositeRaysParams and _C.composite_rays_{forward,backward}_{cpu,cuda}.
#include "nerfgan_distill/composite_rays.h"

#include "binding.h"

namespace ngd::bindings {
namespace {

using composite_rays::Params;

void check_inputs(const Params& p) {
  require(p.rays >= 0 && p.s >= 2 && p.c >= 0, "composite_rays: need rays >= 0, samples >= 2 and channels >= 0");
  require_dtype(p.dtype, "composite_rays");
  if (p.rays > 0)
    require(p.colors && p.densities && p.depths && p.depth_range, "composite_rays: inputs must not be null");
}

void check_forward(const Params& p) {
  check_inputs(p);
  require(p.rays == 0 || (p.rgb && p.depth && p.weights), "composite_rays: outputs must not be null");
}

void check_backward(const Params& p) {
  check_inputs(p);
  require(p.rays == 0 || (p.weights_in && p.grad_rgb && p.grad_depth && p.grad_weights && p.transmittance &&
                          p.grad_colors && p.grad_densities),
          "composite_rays: backward buffers must not be null");
}

}  // namespace

void bind_composite_rays(py::module_& m) {
  auto cls = params_class<Params>(m, "CompositeRaysParams");
  pointer_field(cls, "colors", &Params::colors);
  pointer_field(cls, "densities", &Params::densities);
  pointer_field(cls, "depths", &Params::depths);
  pointer_field(cls, "depth_range", &Params::depth_range);
  pointer_field(cls, "rgb", &Params::rgb);
  pointer_field(cls, "depth", &Params::depth);
  pointer_field(cls, "weights", &Params::weights);
  pointer_field(cls, "weights_in", &Params::weights_in);
  pointer_field(cls, "grad_rgb", &Params::grad_rgb);
  pointer_field(cls, "grad_depth", &Params::grad_depth);
  pointer_field(cls, "grad_weights", &Params::grad_weights);
  pointer_field(cls, "transmittance", &Params::transmittance);
  pointer_field(cls, "grad_colors", &Params::grad_colors);
  pointer_field(cls, "grad_densities", &Params::grad_densities);
  cls.def_readwrite("rays", &Params::rays).def_readwrite("s", &Params::s).def_readwrite("c", &Params::c)
      .def_readwrite("white_back", &Params::white_back).def_readwrite("dtype", &Params::dtype);
  def_launchers<Params>(m, "composite_rays_forward", &check_forward, &composite_rays::forward_cpu,
                        NGD_CUDA_LAUNCHER(composite_rays::forward_cuda));
  def_launchers<Params>(m, "composite_rays_backward", &check_backward, &composite_rays::backward_cpu,
                        NGD_CUDA_LAUNCHER(composite_rays::backward_cuda));
}

}  // namespace ngd::bindings
