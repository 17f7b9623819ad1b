// importance_depths, the op on its own (EG3D's sample_importance with the uniforms given):
// each ray's fine depths from its coarse depths and interval weights, with the fused
// renderer's per-ray math (render_triplanes.h's importance_cdf and importance_depth), so the
// op and the renderer cannot drift apart. All arrays dense, in the compute type.
#pragma once

#include <cstdint>

#include "nerfgan_distill/render_triplanes.h"

namespace ngd {
namespace importance_depths {

struct Params {
  const void* depths = nullptr;   // [rays, coarse], sorted along coarse
  const void* weights = nullptr;  // [rays, coarse - 1]
  const void* u = nullptr;        // [rays, fine], in [0, 1]
  void* out = nullptr;            // [rays, fine]
  int64_t rays = 0;
  int64_t coarse = 0;             // 4 <= coarse <= kMaxSamples: a ray's cdf lives in kMaxSamples entries
  int64_t fine = 0;
  int dtype = kFloat32;           // kFloat32 or kFloat64 only (Python computes fp16/bf16 in fp32)
  int threads = 1;                // CPU only
};

void forward_cpu(const Params& p);
void forward_cuda(const Params& p, int device, std::uintptr_t stream);

}  // namespace importance_depths
}  // namespace ngd
