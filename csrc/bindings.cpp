// The nerfgan_distill._C module: torch-free entry points. Tensors arrive as raw
// addresses (integers), sizes, a dtype code and, for CUDA, a device index and a
// stream handle. All validation with user-facing messages happens in Python; the
// checks here only keep a wrong call from touching memory it should not.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "nerfgan_distill/bias_act.h"
#include "nerfgan_distill/composite.h"
#include "nerfgan_distill/modconv.h"
#include "nerfgan_distill/philox.h"
#include "nerfgan_distill/render.h"
#include "nerfgan_distill/triplane.h"
#include "nerfgan_distill/upfirdn2d.h"

#ifdef NGD_WITH_CUDA
#include <cuda_runtime_api.h>  // CUDART_VERSION only; no runtime call happens at import
#endif

namespace py = pybind11;

#ifndef NGD_CUDA_ARCHS
#define NGD_CUDA_ARCHS ""
#endif
#ifndef NGD_CUDA_SKIP_REASON
#define NGD_CUDA_SKIP_REASON ""
#endif
#ifndef NGD_VERSION
#define NGD_VERSION "unknown"
#endif

namespace {

ngd::bias_act::Params bias_act_params(std::uintptr_t x, std::uintptr_t b, std::uintptr_t g,
                                      std::uintptr_t h, std::uintptr_t out, int64_t numel,
                                      int64_t bias_stride, int64_t bias_size, int act, int mode,
                                      int dtype, double alpha, double gain, double clamp) {
  using namespace ngd::bias_act;
  if (numel < 0 || bias_stride < 1 || bias_size < 1)
    throw std::invalid_argument("bias_act: numel must be >= 0, bias_stride and bias_size >= 1");
  if (act < 0 || act >= kNumActs) throw std::invalid_argument("bias_act: unknown activation code");
  if (mode < kForward || mode > kGrad2) throw std::invalid_argument("bias_act: unknown mode");
  if (dtype < ngd::kFloat32 || dtype > ngd::kBFloat16) throw std::invalid_argument("bias_act: unknown dtype code");
  if (numel > 0 && (!x || !out)) throw std::invalid_argument("bias_act: x and out must not be null");
  if (numel > 0 && mode != kForward && !g) throw std::invalid_argument("bias_act: g must not be null");
  if (numel > 0 && mode == kGrad2 && !h) throw std::invalid_argument("bias_act: h must not be null");
  Params p;
  p.x = reinterpret_cast<const void*>(x);
  p.b = reinterpret_cast<const void*>(b);
  p.g = reinterpret_cast<const void*>(g);
  p.h = reinterpret_cast<const void*>(h);
  p.out = reinterpret_cast<void*>(out);
  p.numel = numel;
  p.bias_stride = bias_stride;
  p.bias_size = bias_size;
  p.act = act;
  p.mode = mode;
  p.dtype = dtype;
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp;
  return p;
}

// sizes: n, c, h, w, out_h, out_w; x_strides and out_strides: n, c, h, w (elements);
// scaling: up_x, up_y, down_x, down_y; taps: pad_x0, pad_y0, fh, fw.
ngd::upfirdn2d::Params upfirdn2d_params(std::uintptr_t x, std::uintptr_t f, std::uintptr_t out,
                                        const std::array<int64_t, 6>& sizes,
                                        const std::array<int64_t, 4>& x_strides,
                                        const std::array<int64_t, 4>& out_strides,
                                        const std::array<int, 4>& scaling,
                                        const std::array<int, 4>& taps, int dtype) {
  for (int64_t v : sizes)
    if (v < 0) throw std::invalid_argument("upfirdn2d: sizes must be >= 0");
  for (int v : scaling)
    if (v < 1) throw std::invalid_argument("upfirdn2d: up and down must be >= 1");
  if (taps[2] < 1 || taps[3] < 1) throw std::invalid_argument("upfirdn2d: the filter must not be empty");
  if (dtype < ngd::kFloat32 || dtype > ngd::kBFloat16) throw std::invalid_argument("upfirdn2d: unknown dtype code");
  const bool empty = sizes[0] * sizes[1] * sizes[4] * sizes[5] == 0;
  if (!empty && (!x || !f || !out)) throw std::invalid_argument("upfirdn2d: x, f and out must not be null");
  ngd::upfirdn2d::Params p;
  p.x = reinterpret_cast<const void*>(x);
  p.f = reinterpret_cast<const void*>(f);
  p.out = reinterpret_cast<void*>(out);
  p.n = sizes[0]; p.c = sizes[1]; p.h = sizes[2]; p.w = sizes[3]; p.out_h = sizes[4]; p.out_w = sizes[5];
  p.sx_n = x_strides[0]; p.sx_c = x_strides[1]; p.sx_h = x_strides[2]; p.sx_w = x_strides[3];
  p.so_n = out_strides[0]; p.so_c = out_strides[1]; p.so_h = out_strides[2]; p.so_w = out_strides[3];
  p.up_x = scaling[0]; p.up_y = scaling[1]; p.down_x = scaling[2]; p.down_y = scaling[3];
  p.pad_x0 = taps[0]; p.pad_y0 = taps[1]; p.fh = taps[2]; p.fw = taps[3];
  p.dtype = dtype;
  return p;
}

void check_dtype(int dtype, const char* op) {
  if (dtype < ngd::kFloat32 || dtype > ngd::kBFloat16) throw std::invalid_argument(std::string(op) + ": unknown dtype code");
}

template <typename P> P* ptr(std::uintptr_t address) { return reinterpret_cast<P*>(address); }

// sizes: n, m, c, h, w; strides (elements): n, plane, c, h, w; axes: grid x, grid y per plane.
ngd::triplane::Params triplane_params(std::uintptr_t planes, std::uintptr_t coords, const std::array<int64_t, 5>& sizes,
                                      const std::array<int64_t, 5>& strides, const std::array<int, 6>& axes,
                                      double scale, int dtype) {
  for (int64_t v : sizes)
    if (v < 0) throw std::invalid_argument("sample_triplanes: sizes must be >= 0");
  for (int a : axes)
    if (a < 0 || a > 2) throw std::invalid_argument("sample_triplanes: axes must be 0, 1 or 2");
  check_dtype(dtype, "sample_triplanes");
  const bool empty = sizes[0] * sizes[1] * sizes[2] == 0;
  if (!empty && (!planes || !coords || sizes[3] < 1 || sizes[4] < 1))
    throw std::invalid_argument("sample_triplanes: planes and coords must not be null or empty");
  ngd::triplane::Params p;
  p.planes = ptr<const void>(planes);
  p.coords = ptr<const void>(coords);
  p.n = sizes[0]; p.m = sizes[1]; p.c = sizes[2]; p.h = sizes[3]; p.w = sizes[4];
  p.sp_n = strides[0]; p.sp_p = strides[1]; p.sp_c = strides[2]; p.sp_h = strides[3]; p.sp_w = strides[4];
  for (int plane = 0; plane < 3; ++plane) {
    p.axis_x[plane] = axes[2 * plane];
    p.axis_y[plane] = axes[2 * plane + 1];
  }
  p.scale = scale;
  p.dtype = dtype;
  return p;
}

ngd::triplane::Params triplane_backward_params(std::uintptr_t planes, std::uintptr_t coords, std::uintptr_t grad_out,
                                               std::uintptr_t grad_planes, std::uintptr_t grad_coords,
                                               const std::array<int64_t, 5>& sizes,
                                               const std::array<int64_t, 5>& strides,
                                               const std::array<int64_t, 5>& grad_strides,
                                               const std::array<int, 6>& axes, double scale, int dtype) {
  auto p = triplane_params(planes, coords, sizes, strides, axes, scale, dtype);
  if (p.n * p.m * p.c > 0 && !grad_out) throw std::invalid_argument("sample_triplanes: grad_out must not be null");
  p.grad_out = ptr<const void>(grad_out);
  p.grad_planes = ptr<void>(grad_planes);
  p.grad_coords = ptr<void>(grad_coords);
  p.sg_n = grad_strides[0]; p.sg_p = grad_strides[1]; p.sg_c = grad_strides[2];
  p.sg_h = grad_strides[3]; p.sg_w = grad_strides[4];
  return p;
}

// sizes: rays, samples per ray, channels. Every pointer is required.
ngd::composite::Params composite_params(const std::array<std::uintptr_t, 4>& inputs,
                                        const std::array<int64_t, 3>& sizes, bool white_back, int dtype) {
  if (sizes[0] < 0 || sizes[1] < 2 || sizes[2] < 0)
    throw std::invalid_argument("composite_rays: need rays >= 0, samples >= 2 and channels >= 0");
  check_dtype(dtype, "composite_rays");
  for (auto address : inputs)
    if (sizes[0] > 0 && !address) throw std::invalid_argument("composite_rays: inputs must not be null");
  ngd::composite::Params p;
  p.colors = ptr<const void>(inputs[0]);
  p.densities = ptr<const void>(inputs[1]);
  p.depths = ptr<const void>(inputs[2]);
  p.depth_range = ptr<const void>(inputs[3]);
  p.rays = sizes[0]; p.s = sizes[1]; p.c = sizes[2];
  p.white_back = white_back;
  p.dtype = dtype;
  return p;
}

void require(bool ok, const char* message) {
  if (!ok) throw std::invalid_argument(message);
}

// pointers: planes, origins, directions, fc1_wt, fc1_bias, fc2_wt, fc2_bias, rgb, depth,
// weight_total, scratch (CUDA only; 0 on the CPU); sizes: n, rays, c, h, w, hidden,
// outputs, coarse, fine; plane_strides (elements): n, plane, c, h, w; axes: grid x, grid y
// per plane; depths: ray_start, ray_end, box_side; flags: auto_limits, disparity,
// white_back, stochastic, pointwise (CPU: the CUDA kernel's path, for tests).
ngd::render::Params render_params(const std::array<std::uintptr_t, 11>& pointers, const std::array<int64_t, 9>& sizes,
                                  const std::array<int64_t, 5>& plane_strides, const std::array<int, 6>& axes,
                                  const std::array<double, 3>& depths, const std::array<bool, 5>& flags,
                                  uint64_t seed, int dtype) {
  for (int64_t v : sizes) require(v >= 0, "render_triplanes: sizes must be >= 0");
  require(sizes[7] >= 2 && sizes[7] + sizes[8] <= ngd::render::kMaxSamples,
          "render_triplanes: need 2 <= coarse and coarse + fine <= kMaxSamples samples per ray");
  require(sizes[2] >= 1 && sizes[3] >= 1 && sizes[4] >= 1 && sizes[5] >= 1 && sizes[6] >= 2,
          "render_triplanes: need c, h, w, hidden >= 1 and outputs >= 2");
  for (int a : axes) require(a >= 0 && a <= 2, "render_triplanes: axes must be 0, 1 or 2");
  check_dtype(dtype, "render_triplanes");
  if (sizes[0] * sizes[1] > 0)
    for (int i = 0; i < 10; ++i) require(pointers[i] != 0, "render_triplanes: tensors must not be null");
  ngd::render::Params p;
  p.planes = triplane_params(pointers[0], 0, {sizes[0], 0, sizes[2], sizes[3], sizes[4]}, plane_strides, axes,
                             2.0 / depths[2], dtype);
  p.origins = ptr<const void>(pointers[1]);
  p.directions = ptr<const void>(pointers[2]);
  p.fc1_wt = ptr<const void>(pointers[3]);
  p.fc1_bias = ptr<const void>(pointers[4]);
  p.fc2_wt = ptr<const void>(pointers[5]);
  p.fc2_bias = ptr<const void>(pointers[6]);
  p.rgb = ptr<void>(pointers[7]);
  p.depth = ptr<void>(pointers[8]);
  p.weight_total = ptr<void>(pointers[9]);
  p.scratch = ptr<void>(pointers[10]);
  p.rays = sizes[1];
  p.hidden = sizes[5];
  p.outputs = sizes[6];
  p.coarse = sizes[7];
  p.fine = sizes[8];
  p.ray_start = depths[0];
  p.ray_end = depths[1];
  p.box_side = depths[2];
  p.auto_limits = flags[0];
  p.disparity = flags[1];
  p.white_back = flags[2];
  p.stochastic = flags[3];
  p.pointwise = flags[4];
  p.seed = seed;
  require(!p.pointwise || (p.planes.c <= ngd::render::kCudaMaxChannels && p.outputs <= ngd::render::kCudaMaxOutputs),
          "render_triplanes: too many channels or decoder outputs for the pointwise path");
  return p;
}

// pointers: depths_coarse, weights, u, out; sizes: rays, coarse, fine. The arrays are dense
// and in the compute type (float32 or float64).
ngd::render::ImportanceParams importance_params(const std::array<std::uintptr_t, 4>& pointers,
                                                const std::array<int64_t, 3>& sizes, int dtype) {
  require(sizes[0] >= 0 && sizes[2] >= 0, "importance_depths: rays and fine must be >= 0");
  require(sizes[1] >= 4 && sizes[1] <= ngd::render::kMaxSamples,
          "importance_depths: need 4 <= coarse <= kMaxSamples depths per ray");
  require(dtype == ngd::kFloat32 || dtype == ngd::kFloat64, "importance_depths: dtype must be float32 or float64");
  if (sizes[0] * sizes[2] > 0)
    for (auto address : pointers) require(address != 0, "importance_depths: tensors must not be null");
  ngd::render::ImportanceParams p;
  p.depths = ptr<const void>(pointers[0]);
  p.weights = ptr<const void>(pointers[1]);
  p.u = ptr<const void>(pointers[2]);
  p.out = ptr<void>(pointers[3]);
  p.rays = sizes[0];
  p.coarse = sizes[1];
  p.fine = sizes[2];
  p.dtype = dtype;
  return p;
}

// sizes (n, i, o, h, w, kh, kw, out_h, out_w) and dtype, as both modulated_conv2d entry points take them.
void check_modconv_sizes(const std::array<int64_t, 9>& sizes, int dtype) {
  for (int64_t v : sizes) require(v >= 0, "modulated_conv2d: sizes must be >= 0");
  // A tap index is an int; no real kernel comes near this bound.
  require(sizes[5] >= 1 && sizes[6] >= 1 && sizes[5] <= 32768 && sizes[6] <= 32768,
          "modulated_conv2d: kernel height and width must be in [1, 32768]");
  check_dtype(dtype, "modulated_conv2d");
}

// The sizes above into the forward's or the weight gradient's parameters (the same fields).
template <class ModconvParams>
void set_modconv_sizes(ModconvParams& p, const std::array<int64_t, 9>& sizes) {
  p.n = sizes[0]; p.i = sizes[1]; p.o = sizes[2]; p.h = sizes[3]; p.w = sizes[4];
  p.kh = int(sizes[5]); p.kw = int(sizes[6]); p.oh = sizes[7]; p.ow = sizes[8];
}

// pointers: x, weight, styles, dcoefs (0: no demodulation), noise (0: none), bias (0: none),
// out, v (0: none; out's strides); sizes: n, i, o, h, w, kh, kw, out_h, out_w; strides
// (elements): n, c, h, w of x, noise (0 where it broadcasts) and out; padding: pad_x0,
// pad_y0; epilogue: alpha, gain, clamp (< 0: none); out_compute: out and v in the compute
// type (double for fp64, else float) instead of x's dtype.
ngd::modconv::Params modconv_params(const std::array<std::uintptr_t, 8>& pointers,
                                    const std::array<int64_t, 9>& sizes, const std::array<int64_t, 4>& x_strides,
                                    const std::array<int64_t, 4>& noise_strides,
                                    const std::array<int64_t, 4>& out_strides, const std::array<int, 2>& padding,
                                    int act, const std::array<double, 3>& epilogue, bool out_compute, int dtype) {
  check_modconv_sizes(sizes, dtype);
  require(act >= 0 && act < ngd::bias_act::kNumActs, "modulated_conv2d: unknown activation code");
  const bool empty = sizes[0] == 0 || sizes[2] == 0 || sizes[7] == 0 || sizes[8] == 0;
  if (!empty) {
    require(sizes[1] >= 1 && sizes[3] >= 1 && sizes[4] >= 1, "modulated_conv2d: x must not be empty");
    require(pointers[0] && pointers[1] && pointers[2] && pointers[6],
            "modulated_conv2d: x, weight, styles and out must not be null");
  }
  ngd::modconv::Params p;
  p.x = ptr<const void>(pointers[0]);
  p.weight = ptr<const void>(pointers[1]);
  p.s = ptr<const void>(pointers[2]);
  p.d = ptr<const void>(pointers[3]);
  p.noise = ptr<const void>(pointers[4]);
  p.bias = ptr<const void>(pointers[5]);
  p.out = ptr<void>(pointers[6]);
  p.v = ptr<void>(pointers[7]);
  p.out_compute = out_compute;
  set_modconv_sizes(p, sizes);
  p.sx_n = x_strides[0]; p.sx_c = x_strides[1]; p.sx_h = x_strides[2]; p.sx_w = x_strides[3];
  p.sn_n = noise_strides[0]; p.sn_c = noise_strides[1]; p.sn_h = noise_strides[2]; p.sn_w = noise_strides[3];
  p.so_n = out_strides[0]; p.so_c = out_strides[1]; p.so_h = out_strides[2]; p.so_w = out_strides[3];
  p.pad_x0 = padding[0];
  p.pad_y0 = padding[1];
  p.act = act;
  p.alpha = epilogue[0];
  p.gain = epilogue[1];
  p.clamp = epilogue[2];
  p.dtype = dtype;
  return p;
}

// pointers: g, x, d, s, partial; sizes as modconv_params'; strides (elements): n, c, h, w of
// g and x; splits: samples per split, pixel splits per sample group, pixels per split (the
// partial holds ceil(n / samples per split) * pixel splits sums of [kh, kw, o, i]).
ngd::modconv::WeightGradParams modconv_weight_grad_params(const std::array<std::uintptr_t, 5>& pointers,
                                                          const std::array<int64_t, 9>& sizes,
                                                          const std::array<int64_t, 4>& g_strides,
                                                          const std::array<int64_t, 4>& x_strides,
                                                          const std::array<int, 2>& padding,
                                                          const std::array<int64_t, 3>& splits, int dtype) {
  check_modconv_sizes(sizes, dtype);
  for (int64_t v : splits) require(v >= 1, "modulated_conv2d: the reduction's splits must be >= 1");
  if (sizes[2] > 0 && sizes[1] > 0) {
    require(pointers[2] && pointers[3] && pointers[4], "modulated_conv2d: d, s and the partial sums must not be null");
    if (sizes[0] > 0 && sizes[7] > 0 && sizes[8] > 0)
      require(pointers[0] && pointers[1] && sizes[3] >= 1 && sizes[4] >= 1,
              "modulated_conv2d: g and x must not be null or empty");
  }
  ngd::modconv::WeightGradParams p;
  p.g = ptr<const void>(pointers[0]);
  p.x = ptr<const void>(pointers[1]);
  p.d = ptr<const void>(pointers[2]);
  p.s = ptr<const void>(pointers[3]);
  p.partial = ptr<void>(pointers[4]);
  set_modconv_sizes(p, sizes);
  p.sg_n = g_strides[0]; p.sg_c = g_strides[1]; p.sg_h = g_strides[2]; p.sg_w = g_strides[3];
  p.sx_n = x_strides[0]; p.sx_c = x_strides[1]; p.sx_h = x_strides[2]; p.sx_w = x_strides[3];
  p.pad_x0 = padding[0];
  p.pad_y0 = padding[1];
  p.samples_per_split = splits[0];
  p.pixel_splits = splits[1];
  p.pixels_per_split = splits[2];
  p.dtype = dtype;
  return p;
}

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
  info["cpu_isa"] = ngd::bias_act::cpu_isa();
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

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "nerfgan_distill native core (torch-free)";
  m.def("build_info", &build_info, "What this module was built with.");

  m.def(
      "bias_act_cpu",
      [](std::uintptr_t x, std::uintptr_t b, std::uintptr_t g, std::uintptr_t h, std::uintptr_t out,
         int64_t numel, int64_t bias_stride, int64_t bias_size, int act, int mode, int dtype,
         double alpha, double gain, double clamp, int threads) {
        auto p = bias_act_params(x, b, g, h, out, numel, bias_stride, bias_size, act, mode,
                                 dtype, alpha, gain, clamp);
        if (threads < 1) throw std::invalid_argument("bias_act_cpu: threads must be >= 1");
        p.threads = threads;
        py::gil_scoped_release release;
        ngd::bias_act::launch_cpu(p);
      },
      py::arg("x"), py::arg("b"), py::arg("g"), py::arg("h"), py::arg("out"), py::arg("numel"),
      py::arg("bias_stride"), py::arg("bias_size"), py::arg("act"), py::arg("mode"),
      py::arg("dtype"), py::arg("alpha"), py::arg("gain"), py::arg("clamp"), py::arg("threads"));

  m.def(
      "upfirdn2d_cpu",
      [](std::uintptr_t x, std::uintptr_t f, std::uintptr_t out, std::array<int64_t, 6> sizes,
         std::array<int64_t, 4> x_strides, std::array<int64_t, 4> out_strides,
         std::array<int, 4> scaling, std::array<int, 4> taps, int dtype, int threads) {
        auto p = upfirdn2d_params(x, f, out, sizes, x_strides, out_strides, scaling, taps, dtype);
        if (threads < 1) throw std::invalid_argument("upfirdn2d_cpu: threads must be >= 1");
        p.threads = threads;
        py::gil_scoped_release release;
        ngd::upfirdn2d::launch_cpu(p);
      },
      py::arg("x"), py::arg("f"), py::arg("out"), py::arg("sizes"), py::arg("x_strides"),
      py::arg("out_strides"), py::arg("scaling"), py::arg("taps"), py::arg("dtype"), py::arg("threads"));

#ifdef NGD_WITH_CUDA
  m.def(
      "upfirdn2d_cuda",
      [](std::uintptr_t x, std::uintptr_t f, std::uintptr_t out, std::array<int64_t, 6> sizes,
         std::array<int64_t, 4> x_strides, std::array<int64_t, 4> out_strides,
         std::array<int, 4> scaling, std::array<int, 4> taps, int dtype, int device,
         std::uintptr_t stream) {
        const auto p = upfirdn2d_params(x, f, out, sizes, x_strides, out_strides, scaling, taps, dtype);
        if (device < 0) throw std::invalid_argument("upfirdn2d_cuda: device must be >= 0");
        py::gil_scoped_release release;
        ngd::upfirdn2d::launch_cuda(p, device, stream);
      },
      py::arg("x"), py::arg("f"), py::arg("out"), py::arg("sizes"), py::arg("x_strides"),
      py::arg("out_strides"), py::arg("scaling"), py::arg("taps"), py::arg("dtype"), py::arg("device"),
      py::arg("stream"));

  m.def(
      "bias_act_cuda",
      [](std::uintptr_t x, std::uintptr_t b, std::uintptr_t g, std::uintptr_t h, std::uintptr_t out,
         int64_t numel, int64_t bias_stride, int64_t bias_size, int act, int mode, int dtype,
         double alpha, double gain, double clamp, int device, std::uintptr_t stream) {
        const auto p = bias_act_params(x, b, g, h, out, numel, bias_stride, bias_size, act, mode,
                                       dtype, alpha, gain, clamp);
        if (device < 0) throw std::invalid_argument("bias_act_cuda: device must be >= 0");
        py::gil_scoped_release release;
        ngd::bias_act::launch_cuda(p, device, stream);
      },
      py::arg("x"), py::arg("b"), py::arg("g"), py::arg("h"), py::arg("out"), py::arg("numel"),
      py::arg("bias_stride"), py::arg("bias_size"), py::arg("act"), py::arg("mode"),
      py::arg("dtype"), py::arg("alpha"), py::arg("gain"), py::arg("clamp"), py::arg("device"),
      py::arg("stream"));
#endif

  // sample_triplanes and composite_rays: the same arguments on both backends, then
  // (threads) on the CPU or (device, stream) on CUDA.
  const auto triplane_forward = [](std::uintptr_t planes, std::uintptr_t coords, std::uintptr_t out,
                                   std::array<int64_t, 5> sizes, std::array<int64_t, 5> strides,
                                   std::array<int, 6> axes, double scale, int dtype) {
    auto p = triplane_params(planes, coords, sizes, strides, axes, scale, dtype);
    require(p.n * p.m * p.c == 0 || out, "sample_triplanes: out must not be null");
    p.out = ptr<void>(out);
    return p;
  };
  const auto composite_forward = [](std::uintptr_t colors, std::uintptr_t densities, std::uintptr_t depths,
                                    std::uintptr_t depth_range, std::uintptr_t rgb, std::uintptr_t depth,
                                    std::uintptr_t weights, std::array<int64_t, 3> sizes, bool white_back, int dtype) {
    auto p = composite_params({colors, densities, depths, depth_range}, sizes, white_back, dtype);
    require(p.rays == 0 || (rgb && depth && weights), "composite_rays: outputs must not be null");
    p.rgb = ptr<void>(rgb);
    p.depth = ptr<void>(depth);
    p.weights = ptr<void>(weights);
    return p;
  };
  const auto composite_backward = [](std::uintptr_t colors, std::uintptr_t densities, std::uintptr_t depths,
                                     std::uintptr_t depth_range, std::uintptr_t weights, std::uintptr_t grad_rgb,
                                     std::uintptr_t grad_depth, std::uintptr_t grad_weights,
                                     std::uintptr_t transmittance, std::uintptr_t grad_colors,
                                     std::uintptr_t grad_densities, std::array<int64_t, 3> sizes, bool white_back,
                                     int dtype) {
    auto p = composite_params({colors, densities, depths, depth_range}, sizes, white_back, dtype);
    require(p.rays == 0 || (weights && grad_rgb && grad_depth && grad_weights && transmittance && grad_colors &&
                            grad_densities),
            "composite_rays: backward buffers must not be null");
    p.weights_in = ptr<const void>(weights);
    p.grad_rgb = ptr<const void>(grad_rgb);
    p.grad_depth = ptr<const void>(grad_depth);
    p.grad_weights = ptr<const void>(grad_weights);
    p.transmittance = ptr<void>(transmittance);
    p.grad_colors = ptr<void>(grad_colors);
    p.grad_densities = ptr<void>(grad_densities);
    return p;
  };

  m.def("sample_triplanes_forward_cpu",
        [=](std::uintptr_t planes, std::uintptr_t coords, std::uintptr_t out, std::array<int64_t, 5> sizes,
            std::array<int64_t, 5> strides, std::array<int, 6> axes, double scale, int dtype, int threads) {
          auto p = triplane_forward(planes, coords, out, sizes, strides, axes, scale, dtype);
          require(threads >= 1, "sample_triplanes_cpu: threads must be >= 1");
          p.threads = threads;
          py::gil_scoped_release release;
          ngd::triplane::forward_cpu(p);
        });
  m.def("sample_triplanes_backward_cpu",
        [](std::uintptr_t planes, std::uintptr_t coords, std::uintptr_t grad_out, std::uintptr_t grad_planes,
           std::uintptr_t grad_coords, std::array<int64_t, 5> sizes, std::array<int64_t, 5> strides,
           std::array<int64_t, 5> grad_strides, std::array<int, 6> axes, double scale, int dtype, int threads) {
          auto p = triplane_backward_params(planes, coords, grad_out, grad_planes, grad_coords, sizes, strides,
                                            grad_strides, axes, scale, dtype);
          require(threads >= 1, "sample_triplanes_cpu: threads must be >= 1");
          p.threads = threads;
          py::gil_scoped_release release;
          ngd::triplane::backward_cpu(p);
        });
  m.def("composite_rays_forward_cpu",
        [=](std::uintptr_t colors, std::uintptr_t densities, std::uintptr_t depths, std::uintptr_t depth_range,
            std::uintptr_t rgb, std::uintptr_t depth, std::uintptr_t weights, std::array<int64_t, 3> sizes,
            bool white_back, int dtype, int threads) {
          auto p = composite_forward(colors, densities, depths, depth_range, rgb, depth, weights, sizes, white_back,
                                     dtype);
          require(threads >= 1, "composite_rays_cpu: threads must be >= 1");
          p.threads = threads;
          py::gil_scoped_release release;
          ngd::composite::forward_cpu(p);
        });
  m.def("composite_rays_backward_cpu",
        [=](std::uintptr_t colors, std::uintptr_t densities, std::uintptr_t depths, std::uintptr_t depth_range,
            std::uintptr_t weights, std::uintptr_t grad_rgb, std::uintptr_t grad_depth, std::uintptr_t grad_weights,
            std::uintptr_t transmittance, std::uintptr_t grad_colors, std::uintptr_t grad_densities,
            std::array<int64_t, 3> sizes, bool white_back, int dtype, int threads) {
          auto p = composite_backward(colors, densities, depths, depth_range, weights, grad_rgb, grad_depth,
                                      grad_weights, transmittance, grad_colors, grad_densities, sizes, white_back,
                                      dtype);
          require(threads >= 1, "composite_rays_cpu: threads must be >= 1");
          p.threads = threads;
          py::gil_scoped_release release;
          ngd::composite::backward_cpu(p);
        });

  // render_triplanes (fused, forward only): the same arguments on both backends, then
  // (threads) on the CPU or (device, stream) on CUDA.
  m.def("render_triplanes_forward_cpu",
        [](std::array<std::uintptr_t, 11> pointers, std::array<int64_t, 9> sizes,
           std::array<int64_t, 5> plane_strides, std::array<int, 6> axes, std::array<double, 3> depths,
           std::array<bool, 5> flags, uint64_t seed, int dtype, int threads) {
          auto p = render_params(pointers, sizes, plane_strides, axes, depths, flags, seed, dtype);
          require(threads >= 1, "render_triplanes_cpu: threads must be >= 1");
          p.threads = threads;
          py::gil_scoped_release release;
          ngd::render::forward_cpu(p);
        });
  // importance_depths (forward only): the same arguments on both backends, then (threads)
  // on the CPU or (device, stream) on CUDA.
  m.def("importance_depths_forward_cpu",
        [](std::array<std::uintptr_t, 4> pointers, std::array<int64_t, 3> sizes, int dtype, int threads) {
          auto p = importance_params(pointers, sizes, dtype);
          require(threads >= 1, "importance_depths_cpu: threads must be >= 1");
          p.threads = threads;
          py::gil_scoped_release release;
          ngd::render::importance_forward_cpu(p);
        },
        py::arg("pointers"), py::arg("sizes"), py::arg("dtype"), py::arg("threads"));
  // modulated_conv2d (fused, stride 1: forward and weight gradient): the same arguments on both backends,
  // then (threads) on the CPU or (device, stream) on CUDA.
  m.def("modulated_conv2d_forward_cpu",
        [](std::array<std::uintptr_t, 8> pointers, std::array<int64_t, 9> sizes, std::array<int64_t, 4> x_strides,
           std::array<int64_t, 4> noise_strides, std::array<int64_t, 4> out_strides, std::array<int, 2> padding,
           int act, std::array<double, 3> epilogue, bool out_compute, int dtype, int threads) {
          auto p = modconv_params(pointers, sizes, x_strides, noise_strides, out_strides, padding, act, epilogue,
                                  out_compute, dtype);
          require(threads >= 1, "modulated_conv2d_cpu: threads must be >= 1");
          p.threads = threads;
          py::gil_scoped_release release;
          ngd::modconv::forward_cpu(p);
        },
        py::arg("pointers"), py::arg("sizes"), py::arg("x_strides"), py::arg("noise_strides"), py::arg("out_strides"),
        py::arg("padding"), py::arg("act"), py::arg("epilogue"), py::arg("out_compute"), py::arg("dtype"),
        py::arg("threads"));
  m.def("modulated_conv2d_weight_grad_cpu",
        [](std::array<std::uintptr_t, 5> pointers, std::array<int64_t, 9> sizes, std::array<int64_t, 4> g_strides,
           std::array<int64_t, 4> x_strides, std::array<int, 2> padding, std::array<int64_t, 3> splits, int dtype,
           int threads) {
          auto p = modconv_weight_grad_params(pointers, sizes, g_strides, x_strides, padding, splits, dtype);
          require(threads >= 1, "modulated_conv2d_cpu: threads must be >= 1");
          p.threads = threads;
          py::gil_scoped_release release;
          ngd::modconv::weight_grad_cpu(p);
        },
        py::arg("pointers"), py::arg("sizes"), py::arg("g_strides"), py::arg("x_strides"), py::arg("padding"),
        py::arg("splits"), py::arg("dtype"), py::arg("threads"));
  m.attr("RENDER_MAX_SAMPLES") = ngd::render::kMaxSamples;
  m.attr("IMPORTANCE_MAX_COARSE") = ngd::render::kMaxSamples;
  m.attr("RENDER_CUDA_MAX_CHANNELS") = ngd::render::kCudaMaxChannels;
  m.attr("RENDER_CUDA_MAX_OUTPUTS") = ngd::render::kCudaMaxOutputs;
  m.def(
      "philox4x32_10",
      [](std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
        const auto out = ngd::philox::philox4x32_10({{counter[0], counter[1], counter[2], counter[3]}}, key[0], key[1]);
        return std::array<uint32_t, 4>{out.v[0], out.v[1], out.v[2], out.v[3]};
      },
      "Philox4x32-10 (the fused renderer's generator), for known-answer tests.");

#ifdef NGD_WITH_CUDA
  m.def("sample_triplanes_forward_cuda",
        [=](std::uintptr_t planes, std::uintptr_t coords, std::uintptr_t out, std::array<int64_t, 5> sizes,
            std::array<int64_t, 5> strides, std::array<int, 6> axes, double scale, int dtype, int device,
            std::uintptr_t stream) {
          const auto p = triplane_forward(planes, coords, out, sizes, strides, axes, scale, dtype);
          require(device >= 0, "sample_triplanes_cuda: device must be >= 0");
          py::gil_scoped_release release;
          ngd::triplane::forward_cuda(p, device, stream);
        });
  m.def("sample_triplanes_backward_cuda",
        [](std::uintptr_t planes, std::uintptr_t coords, std::uintptr_t grad_out, std::uintptr_t grad_planes,
           std::uintptr_t grad_coords, std::array<int64_t, 5> sizes, std::array<int64_t, 5> strides,
           std::array<int64_t, 5> grad_strides, std::array<int, 6> axes, double scale, int dtype, int device,
           std::uintptr_t stream) {
          const auto p = triplane_backward_params(planes, coords, grad_out, grad_planes, grad_coords, sizes, strides,
                                                  grad_strides, axes, scale, dtype);
          require(device >= 0, "sample_triplanes_cuda: device must be >= 0");
          py::gil_scoped_release release;
          ngd::triplane::backward_cuda(p, device, stream);
        });
  m.def("composite_rays_forward_cuda",
        [=](std::uintptr_t colors, std::uintptr_t densities, std::uintptr_t depths, std::uintptr_t depth_range,
            std::uintptr_t rgb, std::uintptr_t depth, std::uintptr_t weights, std::array<int64_t, 3> sizes,
            bool white_back, int dtype, int device, std::uintptr_t stream) {
          const auto p = composite_forward(colors, densities, depths, depth_range, rgb, depth, weights, sizes,
                                           white_back, dtype);
          require(device >= 0, "composite_rays_cuda: device must be >= 0");
          py::gil_scoped_release release;
          ngd::composite::forward_cuda(p, device, stream);
        });
  m.def("composite_rays_backward_cuda",
        [=](std::uintptr_t colors, std::uintptr_t densities, std::uintptr_t depths, std::uintptr_t depth_range,
            std::uintptr_t weights, std::uintptr_t grad_rgb, std::uintptr_t grad_depth, std::uintptr_t grad_weights,
            std::uintptr_t transmittance, std::uintptr_t grad_colors, std::uintptr_t grad_densities,
            std::array<int64_t, 3> sizes, bool white_back, int dtype, int device, std::uintptr_t stream) {
          const auto p = composite_backward(colors, densities, depths, depth_range, weights, grad_rgb, grad_depth,
                                            grad_weights, transmittance, grad_colors, grad_densities, sizes,
                                            white_back, dtype);
          require(device >= 0, "composite_rays_cuda: device must be >= 0");
          py::gil_scoped_release release;
          ngd::composite::backward_cuda(p, device, stream);
        });
  m.def("modulated_conv2d_forward_cuda",
        [](std::array<std::uintptr_t, 8> pointers, std::array<int64_t, 9> sizes, std::array<int64_t, 4> x_strides,
           std::array<int64_t, 4> noise_strides, std::array<int64_t, 4> out_strides, std::array<int, 2> padding,
           int act, std::array<double, 3> epilogue, bool out_compute, int dtype, int device, std::uintptr_t stream) {
          const auto p = modconv_params(pointers, sizes, x_strides, noise_strides, out_strides, padding, act,
                                        epilogue, out_compute, dtype);
          require(device >= 0, "modulated_conv2d_cuda: device must be >= 0");
          py::gil_scoped_release release;
          ngd::modconv::forward_cuda(p, device, stream);
        },
        py::arg("pointers"), py::arg("sizes"), py::arg("x_strides"), py::arg("noise_strides"), py::arg("out_strides"),
        py::arg("padding"), py::arg("act"), py::arg("epilogue"), py::arg("out_compute"), py::arg("dtype"),
        py::arg("device"), py::arg("stream"));
  m.def("modulated_conv2d_weight_grad_cuda",
        [](std::array<std::uintptr_t, 5> pointers, std::array<int64_t, 9> sizes, std::array<int64_t, 4> g_strides,
           std::array<int64_t, 4> x_strides, std::array<int, 2> padding, std::array<int64_t, 3> splits, int dtype,
           int device, std::uintptr_t stream) {
          const auto p = modconv_weight_grad_params(pointers, sizes, g_strides, x_strides, padding, splits, dtype);
          require(device >= 0, "modulated_conv2d_cuda: device must be >= 0");
          py::gil_scoped_release release;
          ngd::modconv::weight_grad_cuda(p, device, stream);
        },
        py::arg("pointers"), py::arg("sizes"), py::arg("g_strides"), py::arg("x_strides"), py::arg("padding"),
        py::arg("splits"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
  m.def("importance_depths_forward_cuda",
        [](std::array<std::uintptr_t, 4> pointers, std::array<int64_t, 3> sizes, int dtype, int device,
           std::uintptr_t stream) {
          const auto p = importance_params(pointers, sizes, dtype);
          require(device >= 0, "importance_depths_cuda: device must be >= 0");
          py::gil_scoped_release release;
          ngd::render::importance_forward_cuda(p, device, stream);
        },
        py::arg("pointers"), py::arg("sizes"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
  m.def("render_triplanes_forward_cuda",
        [](std::array<std::uintptr_t, 11> pointers, std::array<int64_t, 9> sizes,
           std::array<int64_t, 5> plane_strides, std::array<int, 6> axes, std::array<double, 3> depths,
           std::array<bool, 5> flags, uint64_t seed, int dtype, int device, std::uintptr_t stream) {
          auto p = render_params(pointers, sizes, plane_strides, axes, depths, flags, seed, dtype);
          p.pointwise = true;  // the only CUDA path
          require(p.planes.c <= ngd::render::kCudaMaxChannels && p.outputs <= ngd::render::kCudaMaxOutputs,
                  "render_triplanes_cuda: too many channels or decoder outputs");
          require(p.planes.n * p.rays == 0 || p.scratch, "render_triplanes_cuda: scratch must not be null");
          require(device >= 0, "render_triplanes_cuda: device must be >= 0");
          py::gil_scoped_release release;
          ngd::render::forward_cuda(p, device, stream);
        });
#endif
}
