// _C.ModulatedConv2dParams, _C.ModulatedConv2dWeightGradParams and
// _C.modulated_conv2d_{forward,weight_grad}_{cpu,cuda} (the fused kernels, stride 1).
#include "nerfgan_distill/modulated_conv2d.h"

#include "binding.h"

namespace ngd::bindings {
namespace {

using modulated_conv2d::Params;
using modulated_conv2d::WeightGradParams;

// The sizes both entry points share.
template <class P>
void check_sizes(const P& p) {
  for (int64_t v : {p.n, p.i, p.o, p.h, p.w, p.oh, p.ow}) require(v >= 0, "modulated_conv2d: sizes must be >= 0");
  // A tap index is an int; no real kernel comes near this bound.
  require(p.kh >= 1 && p.kw >= 1 && p.kh <= 32768 && p.kw <= 32768,
          "modulated_conv2d: kernel height and width must be in [1, 32768]");
  require_dtype(p.dtype, "modulated_conv2d");
}

void check_forward(const Params& p) {
  check_sizes(p);
  require(p.act >= 0 && p.act < bias_act::kNumActs, "modulated_conv2d: unknown activation code");
  if (p.n == 0 || p.o == 0 || p.oh == 0 || p.ow == 0) return;
  require(p.i >= 1 && p.h >= 1 && p.w >= 1, "modulated_conv2d: x must not be empty");
  require(p.x && p.weight && p.s && p.out, "modulated_conv2d: x, weight, styles and out must not be null");
}

void check_weight_grad(const WeightGradParams& p) {
  check_sizes(p);
  for (int64_t v : {p.samples_per_split, p.pixel_splits, p.pixels_per_split})
    require(v >= 1, "modulated_conv2d: the reduction's splits must be >= 1");
  if (p.o == 0 || p.i == 0) return;
  require(p.d && p.s && p.partial, "modulated_conv2d: d, s and the partial sums must not be null");
  if (p.n > 0 && p.oh > 0 && p.ow > 0)
    require(p.g && p.x && p.h >= 1 && p.w >= 1, "modulated_conv2d: g and x must not be null or empty");
}

}  // namespace

void bind_modulated_conv2d(py::module_& m) {
  auto fwd = params_class<Params>(m, "ModulatedConv2dParams");
  pointer_field(fwd, "x", &Params::x);
  pointer_field(fwd, "weight", &Params::weight);
  pointer_field(fwd, "s", &Params::s);
  pointer_field(fwd, "d", &Params::d);
  pointer_field(fwd, "noise", &Params::noise);
  pointer_field(fwd, "bias", &Params::bias);
  pointer_field(fwd, "out", &Params::out);
  pointer_field(fwd, "v", &Params::v);
  fwd.def_readwrite("out_compute", &Params::out_compute)
      .def_readwrite("n", &Params::n).def_readwrite("i", &Params::i).def_readwrite("o", &Params::o)
      .def_readwrite("h", &Params::h).def_readwrite("w", &Params::w)
      .def_readwrite("oh", &Params::oh).def_readwrite("ow", &Params::ow)
      .def_readwrite("kh", &Params::kh).def_readwrite("kw", &Params::kw)
      .def_readwrite("sx_n", &Params::sx_n).def_readwrite("sx_c", &Params::sx_c)
      .def_readwrite("sx_h", &Params::sx_h).def_readwrite("sx_w", &Params::sx_w)
      .def_readwrite("sn_n", &Params::sn_n).def_readwrite("sn_c", &Params::sn_c)
      .def_readwrite("sn_h", &Params::sn_h).def_readwrite("sn_w", &Params::sn_w)
      .def_readwrite("so_n", &Params::so_n).def_readwrite("so_c", &Params::so_c)
      .def_readwrite("so_h", &Params::so_h).def_readwrite("so_w", &Params::so_w)
      .def_readwrite("pad_x0", &Params::pad_x0).def_readwrite("pad_y0", &Params::pad_y0)
      .def_readwrite("act", &Params::act).def_readwrite("alpha", &Params::alpha)
      .def_readwrite("gain", &Params::gain).def_readwrite("clamp", &Params::clamp)
      .def_readwrite("dtype", &Params::dtype);
  def_launchers<Params>(m, "modulated_conv2d_forward", &check_forward, &modulated_conv2d::forward_cpu,
                        NGD_CUDA_LAUNCHER(modulated_conv2d::forward_cuda));

  auto wgrad = params_class<WeightGradParams>(m, "ModulatedConv2dWeightGradParams");
  pointer_field(wgrad, "g", &WeightGradParams::g);
  pointer_field(wgrad, "x", &WeightGradParams::x);
  pointer_field(wgrad, "d", &WeightGradParams::d);
  pointer_field(wgrad, "s", &WeightGradParams::s);
  pointer_field(wgrad, "partial", &WeightGradParams::partial);
  wgrad.def_readwrite("n", &WeightGradParams::n).def_readwrite("i", &WeightGradParams::i)
      .def_readwrite("o", &WeightGradParams::o).def_readwrite("h", &WeightGradParams::h)
      .def_readwrite("w", &WeightGradParams::w).def_readwrite("oh", &WeightGradParams::oh)
      .def_readwrite("ow", &WeightGradParams::ow).def_readwrite("kh", &WeightGradParams::kh)
      .def_readwrite("kw", &WeightGradParams::kw)
      .def_readwrite("sg_n", &WeightGradParams::sg_n).def_readwrite("sg_c", &WeightGradParams::sg_c)
      .def_readwrite("sg_h", &WeightGradParams::sg_h).def_readwrite("sg_w", &WeightGradParams::sg_w)
      .def_readwrite("sx_n", &WeightGradParams::sx_n).def_readwrite("sx_c", &WeightGradParams::sx_c)
      .def_readwrite("sx_h", &WeightGradParams::sx_h).def_readwrite("sx_w", &WeightGradParams::sx_w)
      .def_readwrite("pad_x0", &WeightGradParams::pad_x0).def_readwrite("pad_y0", &WeightGradParams::pad_y0)
      .def_readwrite("samples_per_split", &WeightGradParams::samples_per_split)
      .def_readwrite("pixel_splits", &WeightGradParams::pixel_splits)
      .def_readwrite("pixels_per_split", &WeightGradParams::pixels_per_split)
      .def_readwrite("dtype", &WeightGradParams::dtype);
  def_launchers<WeightGradParams>(m, "modulated_conv2d_weight_grad", &check_weight_grad,
                                  &modulated_conv2d::weight_grad_cpu,
                                  NGD_CUDA_LAUNCHER(modulated_conv2d::weight_grad_cuda));
}

}  // namespace ngd::bindings
