// Shared definitions for the torch-free native core: host/device qualifiers,
// the shared codes (kernel_codes.h) and math wrappers that pick the float or double libm function.
#pragma once

#include <cmath>
#include <cstdint>

#include "nerfgan_distill/kernel_codes.h"  // ngd::DType and the other shared codes

#if defined(__CUDACC__)
#define NGD_HD __host__ __device__ __forceinline__
#define NGD_HD_INLINE __host__ __device__ __forceinline__
#else
#define NGD_HD inline
// For the math inside elementwise loops: a CPU kernel file instantiates hundreds of loops, and
// once GCC's inlining budget is spent a call left in a loop body stops it vectorising.
#define NGD_HD_INLINE inline __attribute__((always_inline))
#endif

// Host kernels are compiled once per CPU ISA (see CMakeLists.txt). Every inline helper
// lives in an inline namespace named after that ISA, so each copy gets its own symbols
// and the linker can never hand an AVX2 copy to the baseline path (an ODR trap).
#ifndef NGD_ISA
#define NGD_ISA baseline
#endif
#define NGD_ISA_BEGIN inline namespace NGD_ISA {
#define NGD_ISA_END }

namespace ngd {

NGD_ISA_BEGIN

// Explicit float/double overloads: in device code std:: math is not available and
// the unqualified C names would silently promote float to double on the host.
NGD_HD float ngd_exp(float x) { return expf(x); }
NGD_HD double ngd_exp(double x) { return exp(x); }
NGD_HD float ngd_expm1(float x) { return expm1f(x); }
NGD_HD double ngd_expm1(double x) { return expm1(x); }
NGD_HD float ngd_log1p(float x) { return log1pf(x); }
NGD_HD double ngd_log1p(double x) { return log1p(x); }
NGD_HD float ngd_tanh(float x) { return tanhf(x); }
NGD_HD double ngd_tanh(double x) { return tanh(x); }
NGD_HD float ngd_floor(float x) { return floorf(x); }
NGD_HD double ngd_floor(double x) { return floor(x); }
NGD_HD float ngd_log(float x) { return logf(x); }
NGD_HD double ngd_log(double x) { return log(x); }
#if defined(__CUDA_ARCH__)
NGD_HD bool ngd_isfinite(float x) { return isfinite(x); }
NGD_HD bool ngd_isfinite(double x) { return isfinite(x); }
NGD_HD bool ngd_isnan(float x) { return isnan(x); }
NGD_HD bool ngd_isnan(double x) { return isnan(x); }
#else
NGD_HD bool ngd_isfinite(float x) { return std::isfinite(x); }
NGD_HD bool ngd_isfinite(double x) { return std::isfinite(x); }
NGD_HD bool ngd_isnan(float x) { return std::isnan(x); }
NGD_HD bool ngd_isnan(double x) { return std::isnan(x); }
#endif

NGD_ISA_END

// The ISA the CPU kernels run with on this machine (csrc/cpu/cpu_dispatch.cpp).
const char* cpu_isa();

}  // namespace ngd
