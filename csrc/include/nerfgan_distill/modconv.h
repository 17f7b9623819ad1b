// modulated_conv2d forward, stride 1 (up = down = 1), as an implicit GEMM with the
// bias_act epilogue fused: out[n] = epilogue(W_n (*) x[n]) where W_n = W * s[n] (styles
// scale the input channels). The GEMM's M is the output channels, its N the output
// pixels of one sample and its K the input channels times the KH x KW taps.
//
// The kernels split the work into output tiles (block_o channels x block_p pixels of one
// sample) and each tile's K into slices (block_k input channels under one tap). Every
// index computation lives here, as NGD_HD functions of one tile element, so the CUDA
// kernel (csrc/cuda/modconv_cuda.cu: threads each take a strided subset of a tile) and
// its CPU twin (csrc/cpu/modconv_cpu.cpp: loops) share it and the twin tests it.
//
// Contract (nerfgan_distill/ops/modulated_conv2d.py prepares it, as for the Triton kernel):
// the weight is [KH, KW, O, I] dense in correlation order (flip_weight=False already
// flipped), with the fp16 pre-normalisation applied; it, s, d and bias are dense in the
// compute type (double for fp64 x, else float); x, noise and out are in x's dtype with any
// strides. Accumulation is in the compute type; for fp16/bf16 x the kernels round each
// modulated weight to x's dtype before multiplying (the tensor cores' operands).
#pragma once

#include <cstdint>

#include "nerfgan_distill/bias_act.h"
#include "nerfgan_distill/common.h"

namespace ngd {
namespace modconv {

struct Params {
  const void* x = nullptr;      // [N, I, H, W], strides sx_*, x's dtype
  const void* weight = nullptr;  // [KH, KW, O, I] dense, compute type
  const void* s = nullptr;      // [N, I] dense, compute type: the styles
  const void* d = nullptr;      // [N, O] dense, compute type: demodulation; nullptr: none
  const void* noise = nullptr;  // [N, O, OH, OW], strides sn_* (0 where it broadcasts), x's dtype; nullptr: none
  const void* bias = nullptr;   // [O] dense, compute type; nullptr: none
  void* out = nullptr;          // [N, O, OH, OW], strides so_*, x's dtype
  int64_t n = 0, i = 0, o = 0, h = 0, w = 0, oh = 0, ow = 0;
  int kh = 1, kw = 1;
  int64_t sx_n = 0, sx_c = 0, sx_h = 0, sx_w = 0;
  int64_t sn_n = 0, sn_c = 0, sn_h = 0, sn_w = 0;
  int64_t so_n = 0, so_c = 0, so_h = 0, so_w = 0;
  int pad_x0 = 0, pad_y0 = 0;  // the far pads only shape the output (oh, ow)
  int act = bias_act::kLinear;
  double alpha = 0.0, gain = 1.0;
  double clamp = -1.0;  // < 0: no clamp
  int dtype = kFloat32;
  int threads = 1;  // CPU only: OpenMP threads
};

NGD_ISA_BEGIN

NGD_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// --- tiles and K-slices ------------------------------------------------------------------------

// One output tile: output channels [o0, o0 + block_o) x output pixels [p0, p0 + block_p) of
// sample n, pixels numbered row-major over OH x OW.
struct Tile {
  int64_t n, o0, p0;
};

struct TileGrid {
  int64_t o_tiles, p_tiles, count;
};

NGD_HD TileGrid tile_grid(const Params& p, int block_o, int block_p) {
  const int64_t o_tiles = ceil_div(p.o, block_o), p_tiles = ceil_div(p.oh * p.ow, block_p);
  return {o_tiles, p_tiles, p.n * o_tiles * p_tiles};
}

// Tile `index` of the grid: pixel tiles fastest, so neighbouring tiles (blocks) share the
// same weight slices and sample.
NGD_HD Tile tile_at(const TileGrid& g, int block_o, int block_p, int64_t index) {
  const int64_t p_tile = index % g.p_tiles, rest = index / g.p_tiles;
  return {rest / g.o_tiles, (rest % g.o_tiles) * block_o, p_tile * block_p};
}

// One K-slice: input channels [i0, i0 + block_k) under the tap (ky, kx). Channel blocks
// outer, taps inner (as the Triton kernel), so consecutive slices read overlapping x.
// Each tap's channels are padded to whole blocks: a slice never straddles two taps.
struct KSlice {
  int64_t i0;
  int ky, kx;
};

NGD_HD int64_t k_slice_count(const Params& p, int block_k) { return ceil_div(p.i, block_k) * p.kh * p.kw; }

NGD_HD KSlice k_slice_at(const Params& p, int block_k, int64_t index) {
  const int taps = p.kh * p.kw;
  const int tap = int(index % taps);
  return {(index / taps) * block_k, tap / p.kw, tap % p.kw};
}

// Element e of a [rows x cols] tile, cols fastest. The weight tile [block_o x block_k] runs
// along the input channels and the input tile [block_k x block_p] along the pixels, as
// their memory does (coalesced loads for threads with consecutive e).
struct TileIndex {
  int row, col;
};

NGD_HD TileIndex tile_index(int e, int cols) { return {e / cols, e % cols}; }

// --- (a) the modulated weight tile [block_o x block_k] -----------------------------------------

// W[o0 + row, i0 + col] of the slice's tap times s[n, i0 + col]; 0 outside O x I, so a
// partial tile adds nothing. Only the memory reads depend on the bounds test (here and in
// im2col_value): the rest of the indexing can then be hoisted out of a CPU loop.
template <typename T>
NGD_HD T modulated_weight(const Params& p, const Tile& t, const KSlice& k, int row, int col) {
  const int64_t o = t.o0 + row, i = k.i0 + col;
  const int64_t tap = int64_t(k.ky) * p.kw + k.kx;
  const int64_t w_offset = (tap * p.o + o) * p.i + i, s_offset = t.n * p.i + i;
  const T* w = static_cast<const T*>(p.weight);
  const T* s = static_cast<const T*>(p.s);
  return ((o < p.o) & (i < p.i)) ? w[w_offset] * s[s_offset] : T(0);
}

// --- (b) the im2col input tile [block_k x block_p] ---------------------------------------------

// Output pixel p0 + col of a tile; invalid past the last pixel. Computed once per column
// (a thread's columns do not change between slices) to keep divisions out of the K loop.
struct Pixel {
  int64_t oy, ox;
  bool valid;
};

NGD_HD Pixel output_pixel(const Params& p, const Tile& t, int col) {
  const int64_t pix = t.p0 + col;
  if (pix >= p.oh * p.ow) return {0, 0, false};
  return {pix / p.ow, pix % p.ow, true};
}

// x[n, i0 + row, oy + ky - pad_y0, ox + kx - pad_x0] for the column's pixel: 0 outside
// the image (the zero padding), past I or past the last pixel. load(offset) reads x at an
// element offset as T.
template <typename T, typename Load>
NGD_HD T im2col_value(const Params& p, const Tile& t, const KSlice& k, int row, const Pixel& px, Load&& load) {
  const int64_t i = k.i0 + row;
  const int64_t iy = px.oy + k.ky - p.pad_y0, ix = px.ox + k.kx - p.pad_x0;
  const int64_t offset = t.n * p.sx_n + i * p.sx_c + iy * p.sx_h + ix * p.sx_w;
  const bool inside = px.valid & (i < p.i) & (iy >= 0) & (iy < p.h) & (ix >= 0) & (ix < p.w);  // & : no branches
  return inside ? load(offset) : T(0);
}

// --- (c) the epilogue of one accumulator element -----------------------------------------------

// f(v) of bias_act's activation `act` (a runtime code: the epilogue runs once per output,
// so a uniform switch costs little and saves one kernel per activation).
template <typename T>
NGD_HD T activate(int act, T v, T alpha) {
  using namespace bias_act;
  T f, d1, d2;
  switch (act) {
    case kRelu: activation<kRelu, T>(v, alpha, f, d1, d2); break;
    case kLrelu: activation<kLrelu, T>(v, alpha, f, d1, d2); break;
    case kTanh: activation<kTanh, T>(v, alpha, f, d1, d2); break;
    case kSigmoid: activation<kSigmoid, T>(v, alpha, f, d1, d2); break;
    case kElu: activation<kElu, T>(v, alpha, f, d1, d2); break;
    case kSelu: activation<kSelu, T>(v, alpha, f, d1, d2); break;
    case kSoftplus: activation<kSoftplus, T>(v, alpha, f, d1, d2); break;
    case kSwish: activation<kSwish, T>(v, alpha, f, d1, d2); break;
    default: f = v; break;
  }
  return f;
}

// Output (o0 + row, column pixel px) from its accumulator: * d[n, o], + noise, + bias[o],
// activation, * gain, clamp (NaN passes, as in bias_act); store(offset, value) writes out
// at an element offset. Elements outside O or past the last pixel store nothing.
// load_noise(offset) reads the noise at an element offset as T.
template <typename T, typename LoadNoise, typename Store>
NGD_HD void epilogue(const Params& p, const Tile& t, int row, const Pixel& px, T acc, LoadNoise&& load_noise,
                     Store&& store) {
  const int64_t o = t.o0 + row;
  if (!px.valid || o >= p.o) return;
  T v = acc;
  if (p.d) v *= static_cast<const T*>(p.d)[t.n * p.o + o];
  if (p.noise) v += load_noise(t.n * p.sn_n + o * p.sn_c + px.oy * p.sn_h + px.ox * p.sn_w);
  if (p.bias) v += static_cast<const T*>(p.bias)[o];
  T y = activate<T>(p.act, v, T(p.alpha)) * T(p.gain);
  if (p.clamp >= 0) {
    const T c = T(p.clamp);
    y = y < -c ? -c : (y > c ? c : y);  // NaN passes through
  }
  store(t.n * p.so_n + o * p.so_c + px.oy * p.so_h + px.ox * p.so_w, y);
}

// The CPU twin of one ISA (csrc/cpu/modconv_cpu.cpp, compiled once per ISA).
void forward_cpu_isa(const Params& p);

NGD_ISA_END

// Launchers: Python validated the arguments (the bindings re-check sizes and pointers).
void forward_cpu(const Params& p);
void forward_cuda(const Params& p, int device, std::uintptr_t stream);

}  // namespace modconv
}  // namespace ngd
