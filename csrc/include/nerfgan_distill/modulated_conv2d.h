// modulated_conv2d, stride 1 (up = down = 1): the forward and the weight gradient.
//
// The forward is an implicit GEMM with the bias_act epilogue fused: out[n] =
// epilogue(W_n (*) x[n]) where W_n = W * s[n] (styles scale the input channels). The
// GEMM's M is the output channels, its N the output pixels of one sample and its K the
// input channels times the KH x KW taps.
//
// The kernels split the work into output tiles (block_o channels x block_p pixels of one
// sample) and each tile's K into slices (block_k input channels under one tap). Every
// index computation lives here, as NGD_HD functions of one tile element, so the CUDA
// kernel (csrc/cuda/modulated_conv2d.cu: threads each take a strided subset of a tile) and
// its CPU twin (csrc/cpu/modulated_conv2d.cpp: loops) share it and the twin tests it. The weight
// gradient (its own section below) is built the same way. dL/dx needs no kernel of its own:
// it is the forward on the gradient, with the weight transposed and flipped.
//
// Contract (nerfgan_distill/ops/modulated_conv2d_fused.py prepares it, as for Triton's):
// the weight is [KH, KW, O, I] dense in correlation order (flip_weight=False already
// flipped), with the fp16 pre-normalisation applied; it, s, d and bias are dense in the
// compute type (double for fp64 x, else float); x, noise and out are in x's dtype (out in
// the compute type with out_compute) with any strides. Accumulation is in the compute
// type; for fp16/bf16 x the kernels round each modulated weight to x's dtype before
// multiplying (the tensor cores' operands).
#pragma once

#include <cstdint>

#include "nerfgan_distill/bias_act.h"
#include "nerfgan_distill/common.h"

namespace ngd {
namespace modulated_conv2d {

struct Params {
  const void* x = nullptr;      // [N, I, H, W], strides sx_*, x's dtype
  const void* weight = nullptr;  // [KH, KW, O, I] dense, compute type
  const void* s = nullptr;      // [N, I] dense, compute type: the styles
  const void* d = nullptr;      // [N, O] dense, compute type: demodulation; nullptr: none
  const void* noise = nullptr;  // [N, O, OH, OW], strides sn_* (0 where it broadcasts), x's dtype; nullptr: none
  const void* bias = nullptr;   // [O] dense, compute type; nullptr: none
  void* out = nullptr;          // [N, O, OH, OW], strides so_*, x's dtype (see out_compute)
  void* v = nullptr;            // out's shape and strides: the demodulated conv before noise and epilogue; nullptr: none
  bool out_compute = false;     // out and v in the compute type instead of x's dtype (dL/dx for the styles' gradient)
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

// The weight gradient's arguments (see its section below).
struct WeightGradParams {
  const void* g = nullptr;  // [N, O, OH, OW], strides sg_*, x's dtype: dL/dz
  const void* x = nullptr;  // [N, I, H, W], strides sx_*
  const void* d = nullptr;  // [N, O] dense, compute type (ones without demodulation)
  const void* s = nullptr;  // [N, I] dense, compute type
  void* partial = nullptr;  // [splits, KH, KW, O, I] dense, compute type
  int64_t n = 0, i = 0, o = 0, h = 0, w = 0, oh = 0, ow = 0;
  int kh = 1, kw = 1;
  int64_t sg_n = 0, sg_c = 0, sg_h = 0, sg_w = 0;
  int64_t sx_n = 0, sx_c = 0, sx_h = 0, sx_w = 0;
  int pad_x0 = 0, pad_y0 = 0;
  int64_t samples_per_split = 1, pixel_splits = 1, pixels_per_split = 1;  // pixel_splits per sample group
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

// Output (o0 + row, column pixel px) from its accumulator: * d[n, o] (stored to v if
// asked), + noise, + bias[o], activation, * gain, clamp (NaN passes, as in bias_act).
// store(base, offset, value) writes out or v at an element offset; elements outside O or
// past the last pixel store nothing. load_noise(offset) reads the noise at an element
// offset as T.
template <typename T, typename LoadNoise, typename Store>
NGD_HD void epilogue(const Params& p, const Tile& t, int row, const Pixel& px, T acc, LoadNoise&& load_noise,
                     Store&& store) {
  const int64_t o = t.o0 + row;
  if (!px.valid || o >= p.o) return;
  T v = acc;
  if (p.d) v *= static_cast<const T*>(p.d)[t.n * p.o + o];
  const int64_t out_offset = t.n * p.so_n + o * p.so_c + px.oy * p.so_h + px.ox * p.so_w;
  if (p.v) store(p.v, out_offset, v);
  if (p.noise) v += load_noise(t.n * p.sn_n + o * p.sn_c + px.oy * p.sn_h + px.ox * p.sn_w);
  if (p.bias) v += static_cast<const T*>(p.bias)[o];
  T y = activate<T>(p.act, v, T(p.alpha)) * T(p.gain);
  if (p.clamp >= 0) {
    const T c = T(p.clamp);
    y = y < -c ? -c : (y > c ? c : y);  // NaN passes through
  }
  store(p.out, out_offset, y);
}

// --- the weight gradient -----------------------------------------------------------------------
//
// out[ky, kx, o, i] = sum_{n, p} d[n, o] s[n, i] g[n, o, p] x[n, i, p + (ky, kx) - pad]: the
// gradient of the correlation-order weight (nerfgan_distill/ops/modulated_conv2d_fused.py
// adds the demodulation's terms). Per tap a GEMM with M = O, N = I and K = the (sample,
// pixel) pairs. Each sample's pixel sum is formed first and scaled by d[n, o] s[n, i] once,
// so the products run on the stored g and x, not on rounded scaled copies.
//
// The reduction is split for parallelism (small-channel layers have few weight tiles but
// many pixels): split j covers samples [n_lo, n_hi) and, of each, the pixels [p_lo, p_hi),
// and writes its own partial sum; the caller adds the splits up (deterministic, no atomics).
// With no samples, pixels or channels the launchers write nothing (the Python side never
// calls them then: such convolutions take the composite path).

NGD_HD int64_t weight_grad_splits(const WeightGradParams& p) {
  return ceil_div(p.n, p.samples_per_split) * p.pixel_splits;
}

// One output tile: channels [o0, o0 + block_o) x [i0, i0 + block_i) of one tap and one split.
struct WeightGradTile {
  int64_t split, o0, i0;
  int ky, kx;
};

struct WeightGradGrid {
  int64_t o_tiles, i_tiles, count;
};

NGD_HD WeightGradGrid weight_grad_grid(const WeightGradParams& p, int block_o, int block_i) {
  const int64_t o_tiles = ceil_div(p.o, block_o), i_tiles = ceil_div(p.i, block_i);
  return {o_tiles, i_tiles, weight_grad_splits(p) * p.kh * p.kw * o_tiles * i_tiles};
}

// Tile `index`: input-channel tiles fastest, then output-channel tiles, taps, splits.
NGD_HD WeightGradTile weight_grad_tile_at(const WeightGradParams& p, const WeightGradGrid& g, int block_o,
                                          int block_i, int64_t index) {
  const int64_t i_tile = index % g.i_tiles;
  int64_t rest = index / g.i_tiles;
  const int64_t o_tile = rest % g.o_tiles;
  rest /= g.o_tiles;
  const int taps = p.kh * p.kw;
  const int tap = int(rest % taps);
  return {rest / taps, o_tile * block_o, i_tile * block_i, tap / p.kw, tap % p.kw};
}

// What split `split` sums: samples [n_lo, n_hi), and of each the pixels [p_lo, p_hi).
struct SplitRange {
  int64_t n_lo, n_hi, p_lo, p_hi;
};

NGD_HD SplitRange split_range(const WeightGradParams& p, int64_t split) {
  const int64_t n_lo = (split / p.pixel_splits) * p.samples_per_split;
  const int64_t p_lo = (split % p.pixel_splits) * p.pixels_per_split;
  const int64_t n_end = n_lo + p.samples_per_split, p_end = p_lo + p.pixels_per_split, pixels = p.oh * p.ow;
  return {n_lo, n_end < p.n ? n_end : p.n, p_lo, p_end < pixels ? p_end : pixels};
}

// Output pixel `pix` (row-major over OH x OW) of a K-slice; invalid at or past p_hi. A K-slice
// of the weight gradient is block_k consecutive pixels of one sample.
NGD_HD Pixel gradient_pixel(const WeightGradParams& p, int64_t pix, int64_t p_hi) {
  if (pix >= p_hi) return {0, 0, false};
  return {pix / p.ow, pix % p.ow, true};
}

// The A tile [block_o x block_k]: g[n, o0 + row, px]; 0 past O or for an invalid pixel.
// load(offset) reads g at an element offset as T.
template <typename T, typename Load>
NGD_HD T gradient_value(const WeightGradParams& p, const WeightGradTile& t, int64_t n, int row, const Pixel& px,
                        Load&& load) {
  const int64_t o = t.o0 + row;
  const int64_t offset = n * p.sg_n + o * p.sg_c + px.oy * p.sg_h + px.ox * p.sg_w;
  return (px.valid & (o < p.o)) ? load(offset) : T(0);
}

// The B tile, transposed [block_i x block_k]: x[n, i0 + row, px + (ky, kx) - pad]; 0 outside
// the image (the zero padding), past I or for an invalid pixel.
template <typename T, typename Load>
NGD_HD T shifted_input_value(const WeightGradParams& p, const WeightGradTile& t, int64_t n, int row, const Pixel& px,
                             Load&& load) {
  const int64_t i = t.i0 + row;
  const int64_t iy = px.oy + t.ky - p.pad_y0, ix = px.ox + t.kx - p.pad_x0;
  const int64_t offset = n * p.sx_n + i * p.sx_c + iy * p.sx_h + ix * p.sx_w;
  const bool inside = px.valid & (i < p.i) & (iy >= 0) & (iy < p.h) & (ix >= 0) & (ix < p.w);
  return inside ? load(offset) : T(0);
}

// d[n, o0 + row] s[n, i0 + col], which scales sample n's pixel sum; 0 outside O x I.
template <typename T>
NGD_HD T sample_scale(const WeightGradParams& p, const WeightGradTile& t, int64_t n, int row, int col) {
  const int64_t o = t.o0 + row, i = t.i0 + col;
  if (o >= p.o || i >= p.i) return T(0);
  return static_cast<const T*>(p.d)[n * p.o + o] * static_cast<const T*>(p.s)[n * p.i + i];
}

// Writes tile element (row, col) of the split's partial sum; nothing outside O x I.
template <typename T>
NGD_HD void store_weight_grad(const WeightGradParams& p, const WeightGradTile& t, int row, int col, T value) {
  const int64_t o = t.o0 + row, i = t.i0 + col;
  if (o >= p.o || i >= p.i) return;
  const int64_t tap = int64_t(t.ky) * p.kw + t.kx;
  static_cast<T*>(p.partial)[((t.split * p.kh * p.kw + tap) * p.o + o) * p.i + i] = value;
}

// The CPU twins of one ISA (csrc/cpu/modulated_conv2d.cpp, compiled once per ISA).
void forward_cpu_isa(const Params& p);
void weight_grad_cpu_isa(const WeightGradParams& p);

NGD_ISA_END

// Launchers: Python validated the arguments (the bindings re-check sizes and pointers).
void forward_cpu(const Params& p);
void forward_cuda(const Params& p, int device, std::uintptr_t stream);
void weight_grad_cpu(const WeightGradParams& p);
void weight_grad_cuda(const WeightGradParams& p, int device, std::uintptr_t stream);

}  // namespace modulated_conv2d
}  // namespace ngd
