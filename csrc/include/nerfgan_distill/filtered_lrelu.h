// filtered_lrelu: StyleGAN3's upsample, bias, leaky ReLU, clamp and downsample as one pass over
// a per-channel intermediate image t that never leaves the CPU's cache or the GPU's shared memory.
//
// Both passes are the same pipeline, per (n, c) plane:
//   stage A  t[ty, tx] = sum fa[ky, kx] X(ty + ky - pad_ay0, tx + kx - pad_ax0)
//            X: x (+ b on the real samples) with up - 1 zeros inserted between samples;
//   pointwise, forward:  a = clamp(lrelu(gain * t, slope), clamp), and the sample's Sign code;
//              backward: a = t * gain * (1 | slope | 0 by the stored code), b unused;
//   stage B  out[oy, ox] = sum fb[ky, kx] a(oy * down + ky - pad_by0, ox * down + kx - pad_bx0),
//            a read as 0 outside [0, t_h) x [0, t_w).
// The op's forward is (fa, up, pad_a) = (fu, up, padding) and (fb, down, pad_b) = (fd, down, 0);
// the gradient of x is the backward pass run on dy with the adjoint filters and the codes the
// forward stored (nerfgan_distill/ops/filtered_lrelu.py sets them up). All gains live in `gain`:
// the taps are the filters themselves, as correlation taps (flip applied).
#pragma once

#include <cstdint>

#include "nerfgan_distill/common.h"
#include "nerfgan_distill/upfirdn2d.h"  // first_live_tap, column_span

namespace ngd {
namespace filtered_lrelu {

struct Params {
  const void* x = nullptr;  // [N, C, H, W] with strides sx_*
  const void* b = nullptr;  // [C] in x's dtype, or null (forward only)
  // Taps in the compute type (double for float64 tensors, else float): a separable filter is
  // its `taps` 1-D correlation taps, used along x and along y; a dense one [taps_h, taps_w].
  const void* fa = nullptr;
  const void* fb = nullptr;
  void* out = nullptr;       // [N, C, out_h, out_w] with strides so_*
  uint8_t* codes = nullptr;  // [N, C, t_h, t_w] dense Sign codes: written by forward (if not null), read by backward
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t t_h = 0, t_w = 0;
  int64_t out_h = 0, out_w = 0;
  int64_t sx_n = 0, sx_c = 0, sx_h = 0, sx_w = 0;
  int64_t so_n = 0, so_c = 0, so_h = 0, so_w = 0;
  int up = 1, pad_ax0 = 0, pad_ay0 = 0, fa_h = 1, fa_w = 1, fa_separable = 1;
  int down = 1, pad_bx0 = 0, pad_by0 = 0, fb_h = 1, fb_w = 1, fb_separable = 1;
  double gain = 1.0, slope = 0.2;
  double clamp = -1.0;  // < 0: no clamp
  int dtype = kFloat32;
  int threads = 1;  // CPU only
};

NGD_ISA_BEGIN

// sum_k f[k] src((u0 + k) / up) over the taps that land on real samples of the zero-inserted
// source (u0 + k a multiple of up) inside [0, size); load(i) reads source sample i.
template <typename T, typename Load>
NGD_HD T line_sum(const T* f, int taps, int up, int64_t u0, int64_t size, Load load) {
  T acc = T(0);
  for (int k = upfirdn2d::first_live_tap(u0, up); k < taps; k += up) {
    const int64_t i = (u0 + k) / up;  // exact: u0 + k is a multiple of up
    if (i >= 0 && i < size) acc += f[k] * load(i);
  }
  return acc;
}

// The same over a dense [fh, fw] window; load(iy, ix) reads source sample (iy, ix).
template <typename T, typename Load>
NGD_HD T window_sum(const T* f, int fh, int fw, int up, int64_t uy0, int64_t ux0, int64_t h, int64_t w, Load load) {
  T acc = T(0);
  for (int ky = upfirdn2d::first_live_tap(uy0, up); ky < fh; ky += up) {
    const int64_t iy = (uy0 + ky) / up;
    if (iy < 0 || iy >= h) continue;
    for (int kx = upfirdn2d::first_live_tap(ux0, up); kx < fw; kx += up) {
      const int64_t ix = (ux0 + kx) / up;
      if (ix >= 0 && ix < w) acc += f[ky * fw + kx] * load(iy, ix);
    }
  }
  return acc;
}

// Forward pointwise step: lrelu(gain * t) (gain > 0, so scaling before or after is the same),
// then the clamp; *code says which branch the gradient takes.
template <typename T>
NGD_HD T activate(T t, T gain, T slope, T clamp, uint8_t* code) {
  T v = t * gain;
  uint8_t sign = kPositive;
  if (v <= T(0)) {  // torch's leaky_relu takes the slope's branch at 0
    v *= slope;
    sign = kNegative;
  }
  if (clamp >= T(0) && (v > clamp || v < -clamp)) {  // torch's clamp passes the gradient at the bound
    v = v > T(0) ? clamp : -clamp;
    sign = kClamped;
  }
  *code = sign;
  return v;
}

// Backward pointwise step: the derivative of activate() at the stored code, times g.
template <typename T>
NGD_HD T masked(T g, uint8_t code, T gain, T slope) {
  return code == kPositive ? g * gain : (code == kNegative ? g * gain * slope : T(0));
}

// The CPU loops of one ISA (csrc/cpu/filtered_lrelu.cpp, compiled once per ISA).
void forward_cpu_isa(const Params& p);
void backward_cpu_isa(const Params& p);

NGD_ISA_END

void forward_cpu(const Params& p);
void backward_cpu(const Params& p);
void forward_cuda(const Params& p, int device, std::uintptr_t stream);
void backward_cuda(const Params& p, int device, std::uintptr_t stream);

}  // namespace filtered_lrelu
}  // namespace ngd
