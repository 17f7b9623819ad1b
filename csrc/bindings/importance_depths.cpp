// _C.ImportanceDepthsParams and _C.importance_depths_forward_{cpu,cuda}.
#include "nerfgan_distill/importance_depths.h"

#include "binding.h"

namespace ngd::bindings {
namespace {

using importance_depths::Params;

void check(const Params& p) {
  require(p.rays >= 0 && p.fine >= 0, "importance_depths: rays and fine must be >= 0");
  require(p.coarse >= 4 && p.coarse <= render_triplanes::kMaxSamples,
          "importance_depths: need 4 <= coarse <= kMaxSamples depths per ray");
  require(p.dtype == kFloat32 || p.dtype == kFloat64, "importance_depths: dtype must be float32 or float64");
  if (p.rays * p.fine > 0)
    require(p.depths && p.weights && p.u && p.out, "importance_depths: tensors must not be null");
}

}  // namespace

void bind_importance_depths(py::module_& m) {
  auto cls = params_class<Params>(m, "ImportanceDepthsParams");
  pointer_field(cls, "depths", &Params::depths);
  pointer_field(cls, "weights", &Params::weights);
  pointer_field(cls, "u", &Params::u);
  pointer_field(cls, "out", &Params::out);
  cls.def_readwrite("rays", &Params::rays).def_readwrite("coarse", &Params::coarse)
      .def_readwrite("fine", &Params::fine).def_readwrite("dtype", &Params::dtype);
  def_launchers<Params>(m, "importance_depths_forward", &check, &importance_depths::forward_cpu,
                        NGD_CUDA_LAUNCHER(importance_depths::forward_cuda));
}

}  // namespace ngd::bindings
