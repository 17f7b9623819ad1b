// GCC vector types for the CPU kernels' register tiles (host code only). Their width
// follows the ISA the translation unit is compiled for (NGD_ISA): 32 bytes with AVX, else
// 16, so each ISA build gets its own definitions.
#pragma once

#include <cstring>

#include "nerfgan_distill/common.h"

namespace ngd {
namespace cpu_vec {
NGD_ISA_BEGIN

#ifdef __AVX__
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif
template <typename T> struct VectorOf;
template <> struct VectorOf<float> { typedef float type __attribute__((vector_size(kVectorBytes))); };
template <> struct VectorOf<double> { typedef double type __attribute__((vector_size(kVectorBytes))); };
template <typename T> using Vec = typename VectorOf<T>::type;
template <typename T> constexpr int kLanes = kVectorBytes / sizeof(T);

// Unaligned loads and stores (memcpy compiles to one vector move).
template <typename T> Vec<T> load_vec(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T> void store_vec(T* p, Vec<T> v) { std::memcpy(p, &v, sizeof(v)); }

NGD_ISA_END
}  // namespace cpu_vec
}  // namespace ngd
