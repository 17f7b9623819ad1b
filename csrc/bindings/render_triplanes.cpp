// _C.RenderTriplanesParams and _C.render_triplanes_forward_{cpu,cuda} (the fused renderer,
// forward only), plus _C.philox4x32_10 (its random generator) for known-answer tests.
#include "nerfgan_distill/philox.h"
#include "nerfgan_distill/render_triplanes.h"

#include "binding.h"

namespace ngd::bindings {
namespace {

using render_triplanes::Params;

void check(const Params& p) {
  const sample_triplanes::Params& g = p.planes;
  for (int64_t v : {g.n, g.c, g.h, g.w, p.rays, p.hidden, p.outputs, p.coarse, p.fine})
    require(v >= 0, "render_triplanes: sizes must be >= 0");
  require(p.coarse >= 2 && p.coarse + p.fine <= render_triplanes::kMaxSamples,
          "render_triplanes: need 2 <= coarse and coarse + fine <= kMaxSamples samples per ray");
  require(g.c >= 1 && g.h >= 1 && g.w >= 1 && p.hidden >= 1 && p.outputs >= 2,
          "render_triplanes: need c, h, w, hidden >= 1 and outputs >= 2");
  for (int plane = 0; plane < 3; ++plane)
    require(g.axis_x[plane] >= 0 && g.axis_x[plane] <= 2 && g.axis_y[plane] >= 0 && g.axis_y[plane] <= 2,
            "render_triplanes: axes must be 0, 1 or 2");
  require_dtype(g.dtype, "render_triplanes");
  if (g.n * p.rays > 0)
    require(g.planes && p.origins && p.directions && p.fc1_wt && p.fc1_bias && p.fc2_wt && p.fc2_bias && p.rgb &&
                p.depth && p.weight_total,
            "render_triplanes: tensors must not be null");
  require(!p.pointwise ||
              (g.c <= render_triplanes::kCudaMaxChannels && p.outputs <= render_triplanes::kCudaMaxOutputs),
          "render_triplanes: too many channels or decoder outputs for the pointwise path");
}

#ifdef NGD_WITH_CUDA
// The CUDA kernel is render_ray_pointwise, per thread, with a scratch buffer for the depth range.
void forward_cuda_pointwise(const Params& given, int device, std::uintptr_t stream) {
  Params p = given;
  p.pointwise = true;
  check(p);
  require(p.planes.n * p.rays == 0 || p.scratch, "render_triplanes_cuda: scratch must not be null");
  render_triplanes::forward_cuda(p, device, stream);
}
#endif

}  // namespace

void bind_render_triplanes(py::module_& m) {
  auto cls = params_class<Params>(m, "RenderTriplanesParams");
  cls.def_readwrite("planes", &Params::planes);  // a SampleTriplanesParams, edited in place
  pointer_field(cls, "origins", &Params::origins);
  pointer_field(cls, "directions", &Params::directions);
  pointer_field(cls, "fc1_wt", &Params::fc1_wt);
  pointer_field(cls, "fc1_bias", &Params::fc1_bias);
  pointer_field(cls, "fc2_wt", &Params::fc2_wt);
  pointer_field(cls, "fc2_bias", &Params::fc2_bias);
  pointer_field(cls, "rgb", &Params::rgb);
  pointer_field(cls, "depth", &Params::depth);
  pointer_field(cls, "weight_total", &Params::weight_total);
  pointer_field(cls, "scratch", &Params::scratch);
  cls.def_readwrite("rays", &Params::rays).def_readwrite("hidden", &Params::hidden)
      .def_readwrite("outputs", &Params::outputs).def_readwrite("coarse", &Params::coarse)
      .def_readwrite("fine", &Params::fine).def_readwrite("auto_limits", &Params::auto_limits)
      .def_readwrite("disparity", &Params::disparity).def_readwrite("white_back", &Params::white_back)
      .def_readwrite("ray_start", &Params::ray_start).def_readwrite("ray_end", &Params::ray_end)
      .def_readwrite("box_side", &Params::box_side).def_readwrite("stochastic", &Params::stochastic)
      .def_readwrite("seed", &Params::seed).def_readwrite("pointwise", &Params::pointwise);
  def_launchers<Params>(m, "render_triplanes_forward", &check, &render_triplanes::forward_cpu,
                        NGD_CUDA_LAUNCHER(forward_cuda_pointwise));

  m.def(
      "philox4x32_10",
      [](std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
        const auto out = philox::philox4x32_10({{counter[0], counter[1], counter[2], counter[3]}}, key[0], key[1]);
        return std::array<uint32_t, 4>{out.v[0], out.v[1], out.v[2], out.v[3]};
      },
      "Philox4x32-10 (the fused renderer's generator), for known-answer tests.");
}

}  // namespace ngd::bindings
