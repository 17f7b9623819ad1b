// exp, log, log1p, expm1 and tanh that elementwise loops can vectorise.
// libm's float functions are calls, one element at a time, so a CPU loop around them runs
// scalar (softplus on the CPU was 4x slower than torch's). On the host, float goes through
// the branch-free versions below (Cephes' polynomials, range reduction by bit arithmetic,
// ~1 ulp, IEEE special values kept); double and device code use libm / CUDA's functions.
#pragma once

#include <cstdint>
#include <cstring>

#include "nerfgan_distill/common.h"

namespace ngd {
NGD_ISA_BEGIN
namespace vec_math {

#if !defined(__CUDA_ARCH__)
NGD_HD_INLINE float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof(f));
  return f;
}
NGD_HD_INLINE int32_t float_to_bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof(i));
  return i;
}
constexpr float kInf = __builtin_inff();

// 2^n for n in [-150, 128], as two normal factors so neither the top nor the subnormal end overflows.
NGD_HD_INLINE float times_pow2(float p, int32_t n) {
  const int32_t half = n >> 1;
  const auto scale = [](int32_t k) { return bits_to_float(static_cast<int32_t>(static_cast<uint32_t>(k + 127) << 23)); };
  return p * scale(half) * scale(n - half);
}

NGD_HD_INLINE float exp(float x) {
  const float xc = x < -104.0f ? -104.0f : (x > 88.75f ? 88.75f : x);  // NaN passes
  // n = round(x / ln2) by the 1.5 * 2^23 trick (round to nearest, no call); r = x - n ln2 in two parts.
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float y = times_pow2(p, static_cast<int32_t>(n == n ? n : 0.0f));  // NaN: p is NaN already
  return x > 88.7228394f ? kInf : (x < -103.972f ? 0.0f : y);
}

NGD_HD_INLINE float log(float x) {
  // Subnormals are scaled into the normal range first; then x = m 2^e with m in [sqrt(1/2), sqrt(2)).
  const bool tiny = x < 1.17549435e-38f;
  const float xs = tiny ? x * 8388608.0f : x;
  const int32_t bits = float_to_bits(xs);
  float e = static_cast<float>((bits >> 23) - 127) - (tiny ? 23.0f : 0.0f);
  float m = bits_to_float((bits & 0x007fffff) | 0x3f800000);
  const bool high = m > 1.41421356f;
  m = high ? m * 0.5f : m;
  e = high ? e + 1.0f : e;
  const float t = m - 1.0f, z = t * t;
  float p = 7.0376836292e-2f;
  p = p * t - 1.1514610310e-1f;
  p = p * t + 1.1676998740e-1f;
  p = p * t - 1.2420140846e-1f;
  p = p * t + 1.4249322787e-1f;
  p = p * t - 1.6668057665e-1f;
  p = p * t + 2.0000714765e-1f;
  p = p * t - 2.4999993993e-1f;
  p = p * t + 3.3333331174e-1f;
  const float y = t + (p * t * z - 2.12194440e-4f * e - 0.5f * z) + 0.693359375f * e;
  // Special values as a chain of selects (one nested expression defeats GCC's if-conversion).
  float r = x < 0.0f ? __builtin_nanf("") : y;
  r = x == 0.0f ? -kInf : r;
  r = x == kInf ? kInf : r;
  return x != x ? x : r;
}

// log1p(x) = log(u) * x / (u - 1) with u = 1 + x: the rounding of u cancels (Goldberg).
NGD_HD_INLINE float log1p(float x) {
  const float u = 1.0f + x;
  const float y = log(u) * x / (u - 1.0f);
  return u == 1.0f ? x : (x == kInf ? kInf : y);
}

// expm1(x) = (u - 1) x / log(u) with u = exp(x): the rounding of u cancels (Kahan).
NGD_HD_INLINE float expm1(float x) {
  const float u = exp(x);
  const float um1 = u - 1.0f;
  const float y = um1 * x / log(u);
  return u == 1.0f ? x : (um1 == -1.0f ? -1.0f : (u == kInf ? kInf : y));
}

NGD_HD_INLINE float tanh(float x) {
  const float a = x < 0.0f ? -x : x;
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float big = 1.0f - 2.0f / (exp(a + a) + 1.0f);
  const float r = a > 0.625f ? (x < 0.0f ? -big : big) : small;  // NaN takes the polynomial, which keeps it
  return x == 0.0f ? x : r;  // tanh(-0) = -0
}
#endif

}  // namespace vec_math

// The float versions for loops: vec_math's on the host, common.h's (CUDA's) on the device.
#if defined(__CUDA_ARCH__)
#define NGD_VEC_FLOAT(name) ngd_##name(x)
#else
#define NGD_VEC_FLOAT(name) vec_math::name(x)
#endif
NGD_HD_INLINE float ngd_vexp(float x) { return NGD_VEC_FLOAT(exp); }
NGD_HD_INLINE float ngd_vlog1p(float x) { return NGD_VEC_FLOAT(log1p); }
NGD_HD_INLINE float ngd_vexpm1(float x) { return NGD_VEC_FLOAT(expm1); }
NGD_HD_INLINE float ngd_vtanh(float x) { return NGD_VEC_FLOAT(tanh); }
#undef NGD_VEC_FLOAT
NGD_HD_INLINE double ngd_vexp(double x) { return ngd_exp(x); }
NGD_HD_INLINE double ngd_vlog1p(double x) { return ngd_log1p(x); }
NGD_HD_INLINE double ngd_vexpm1(double x) { return ngd_expm1(x); }
NGD_HD_INLINE double ngd_vtanh(double x) { return ngd_tanh(x); }

NGD_ISA_END
}  // namespace ngd
