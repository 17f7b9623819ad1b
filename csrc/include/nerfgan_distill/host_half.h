// IEEE fp16 and bfloat16 storage types for host code, with round-to-nearest-even
// conversions, so the CPU backend handles torch.float16/bfloat16 tensors without
// pulling in CUDA headers. Compute always happens in float.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "nerfgan_distill/common.h"

namespace ngd {

struct HostHalf { uint16_t bits; };
struct HostBFloat16 { uint16_t bits; };

NGD_ISA_BEGIN

inline uint32_t float_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bits_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

inline float to_float(HostHalf h) {
  const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  const uint32_t exponent = (h.bits >> 10) & 0x1fu;
  const uint32_t mantissa = h.bits & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
    const float magnitude = float(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

inline HostHalf to_half(float f) {
  const uint32_t x = float_bits(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return {uint16_t(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u))};
  if (a >= 0x477ff000u) return {uint16_t(sign | 0x7c00u)};  // >= 65520 rounds to inf
  if (a < 0x38800000u) {                                     // below 2^-14: subnormal
    if (a < 0x33000000u) return {sign};                      // below 2^-25: zero
    const uint32_t e = a >> 23;
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return {uint16_t(sign | r)};
  }
  uint32_t r = (a - 0x38000000u) >> 13;  // rebias the exponent from 127 to 15
  const uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;  // a carry may reach inf: correct
  return {uint16_t(sign | r)};
}

inline float to_float(HostBFloat16 h) { return bits_float(uint32_t(h.bits) << 16); }

inline HostBFloat16 to_bfloat16(float f) {
  uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return {uint16_t((x >> 16) | 0x40u)};  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return {uint16_t(x >> 16)};
}

// Uniform load/store between a storage type S and a compute type T.
template <typename T> inline T load_as(float v) { return T(v); }
template <typename T> inline T load_as(double v) { return T(v); }
template <typename T> inline T load_as(HostHalf v) { return T(to_float(v)); }
template <typename T> inline T load_as(HostBFloat16 v) { return T(to_float(v)); }

template <typename S> struct StoreAs;
template <> struct StoreAs<float> { template <typename T> static float from(T v) { return float(v); } };
template <> struct StoreAs<double> { template <typename T> static double from(T v) { return double(v); } };
template <> struct StoreAs<HostHalf> { template <typename T> static HostHalf from(T v) { return to_half(float(v)); } };
template <> struct StoreAs<HostBFloat16> { template <typename T> static HostBFloat16 from(T v) { return to_bfloat16(float(v)); } };

// Calls fn(S{}, T{}) with the host storage type S and compute type T of a dtype code.
template <typename Fn>
void with_host_dtype(int dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case kFloat32: fn(float{}, float{}); break;
    case kFloat64: fn(double{}, double{}); break;
    case kFloat16: fn(HostHalf{}, float{}); break;
    case kBFloat16: fn(HostBFloat16{}, float{}); break;
    default: throw std::invalid_argument(std::string(op) + ": unsupported dtype code");
  }
}

NGD_ISA_END
}  // namespace ngd
