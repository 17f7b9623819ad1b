// What every op's bindings share. An op's kernels take one parameter struct (its header's
// Params); Python fills it by field name (tensors as raw addresses) and calls
// _C.<op>_<pass>_cpu(params, threads) or _C.<op>_<pass>_cuda(params, device, stream).
// All validation with user-facing messages happens in Python; each op's check() here only
// keeps a wrong call from touching memory it should not.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "nerfgan_distill/common.h"

namespace ngd::bindings {

namespace py = pybind11;

inline void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

inline void require_dtype(int dtype, const char* op) {
  require(dtype >= 0 && dtype < kNumDTypes, std::string(op) + ": unknown dtype code");
}

// A pointer field, read and written from Python as an integer address (0: null).
template <class P, class Pointer>
void pointer_field(py::class_<P>& cls, const char* name, Pointer P::*member) {
  cls.def_property(
      name, [member](const P& p) { return reinterpret_cast<std::uintptr_t>(p.*member); },
      [member](P& p, std::uintptr_t address) { p.*member = reinterpret_cast<Pointer>(address); });
}

// A C array field (int axis_x[3]), read and written from Python as a list.
template <class P, class T, std::size_t N>
void array_field(py::class_<P>& cls, const char* name, T (P::*member)[N]) {
  cls.def_property(
      name,
      [member](const P& p) {
        std::array<T, N> out;
        for (std::size_t i = 0; i < N; ++i) out[i] = (p.*member)[i];
        return out;
      },
      [member](P& p, const std::array<T, N>& values) {
        for (std::size_t i = 0; i < N; ++i) (p.*member)[i] = values[i];
      });
}

// The struct's Python class: constructible with its defaults, fields by name only (pybind
// refuses unknown attributes, so a misspelt field is an AttributeError, not a silent default).
template <class P>
py::class_<P> params_class(py::module_& m, const char* name) {
  py::class_<P> cls(m, name);
  cls.def(py::init<>());
  return cls;
}

// Launcher types; not deduced (P comes from check), so NGD_CUDA_LAUNCHER's nullptr binds.
template <class T> struct NonDeduced { using type = T; };
template <class P> using CpuLauncher = typename NonDeduced<void (*)(const P&)>::type;
template <class P> using CudaLauncher = typename NonDeduced<void (*)(const P&, int, std::uintptr_t)>::type;

// _C.<kernel>_cpu(params, threads) and, in a CUDA build, _C.<kernel>_cuda(params, device,
// stream): check the struct, then run with the GIL released.
template <class P>
void def_launchers(py::module_& m, const std::string& kernel, void (*check)(const P&), CpuLauncher<P> cpu,
                   CudaLauncher<P> cuda) {
  m.def((kernel + "_cpu").c_str(),
        [check, cpu, kernel](P p, int threads) {
          check(p);
          require(threads >= 1, kernel + "_cpu: threads must be >= 1");
          p.threads = threads;
          py::gil_scoped_release release;
          cpu(p);
        },
        py::arg("params"), py::arg("threads"));
  if (cuda == nullptr) return;
  m.def((kernel + "_cuda").c_str(),
        [check, cuda, kernel](const P& p, int device, std::uintptr_t stream) {
          check(p);
          require(device >= 0, kernel + "_cuda: device must be >= 0");
          py::gil_scoped_release release;
          cuda(p, device, stream);
        },
        py::arg("params"), py::arg("device"), py::arg("stream"));
}

}  // namespace ngd::bindings

// The CUDA launcher where this build has the CUDA backend, else none (its symbol is absent).
#ifdef NGD_WITH_CUDA
#define NGD_CUDA_LAUNCHER(f) (&(f))
#else
#define NGD_CUDA_LAUNCHER(f) nullptr
#endif

// One bind_<op> per op (csrc/bindings/<op>.cpp); module.cpp calls them all.
namespace ngd::bindings {
void bind_bias_act(py::module_& m);
void bind_upfirdn2d(py::module_& m);
void bind_filtered_lrelu(py::module_& m);
void bind_sample_triplanes(py::module_& m);
void bind_composite_rays(py::module_& m);
void bind_render_triplanes(py::module_& m);
void bind_importance_depths(py::module_& m);
void bind_modulated_conv2d(py::module_& m);
}  // namespace ngd::bindings
