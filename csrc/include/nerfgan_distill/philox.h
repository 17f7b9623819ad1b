// Philox4x32-10, the counter-based generator of Salmon et al., "Parallel random
// numbers: as easy as 1, 2, 3" (SC 2011), written from the paper's definition.
// A draw is a pure function of (key, counter), so the fused renderer's random
// numbers depend on (seed, ray, sample) only, never on the thread layout.
#pragma once

#include <cstdint>

#include "nerfgan_distill/common.h"

namespace ngd {
namespace philox {

struct Words { uint32_t v[4]; };

NGD_ISA_BEGIN

// 32 x 32 -> 64-bit product, split into its high and low words.
NGD_HD void mul_hi_lo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = uint64_t(a) * uint64_t(b);
  hi = uint32_t(product >> 32);
  lo = uint32_t(product);
}

// The published multipliers and Weyl key increments (golden ratio and sqrt(3) - 1).
NGD_HD Words philox4x32_10(Words ctr, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mul_hi_lo(kM0, ctr.v[0], hi0, lo0);
    mul_hi_lo(kM1, ctr.v[2], hi1, lo1);
    ctr = Words{{hi1 ^ ctr.v[1] ^ key0, lo1, hi0 ^ ctr.v[3] ^ key1, lo0}};
    key0 += kW0;
    key1 += kW1;
  }
  return ctr;
}

// Uniforms in [0, 1) from the top bits: 24 for float, 53 (two words) for double,
// so every value is exactly representable and 1 is never reached.
template <typename T> NGD_HD T to_uniform(const Words& w);
template <> NGD_HD float to_uniform<float>(const Words& w) { return float(w.v[0] >> 8) * 5.9604644775390625e-8f; }
template <> NGD_HD double to_uniform<double>(const Words& w) {
  const uint64_t bits = (uint64_t(w.v[0] >> 5) << 26) | uint64_t(w.v[1] >> 6);
  return double(bits) * 1.1102230246251565e-16;
}

// The uniform for draw `index` of `stream` on ray `ray` under a 64-bit seed.
template <typename T>
NGD_HD T uniform(uint64_t seed, uint64_t ray, uint32_t stream, uint32_t index) {
  const Words ctr{{index, stream, uint32_t(ray), uint32_t(ray >> 32)}};
  return to_uniform<T>(philox4x32_10(ctr, uint32_t(seed), uint32_t(seed >> 32)));
}

NGD_ISA_END

}  // namespace philox
}  // namespace ngd
