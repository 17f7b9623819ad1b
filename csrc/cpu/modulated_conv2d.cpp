// modulated_conv2d (stride 1) on the CPU, forward and weight gradient: the CUDA kernels'
// twins. They walk the same output tiles and K-slices and fill their tiles with the same
// per-element functions (modulated_conv2d.h), so the tests of these kernels test the CUDA kernels'
// indexing, epilogue and reduction splits.
// In place of the GPU's thread micro-tiles and WMMA, each slice is multiplied by a
// register-tiled loop. Accumulation is in float (double for fp64); for fp16/bf16 the
// modulated weight is rounded to the input dtype first, as the tensor-core path does.
// OpenMP runs over the output tiles. Compiled once per CPU ISA (NGD_ISA); no FMA, so the
// two builds give the same bits.
#include <algorithm>
#include <cstring>
#include <vector>

#include "nerfgan_distill/cpu_vec.h"
#include "nerfgan_distill/host_half.h"
#include "nerfgan_distill/modulated_conv2d.h"

namespace ngd {
namespace modulated_conv2d {
NGD_ISA_BEGIN
namespace {

using cpu_vec::kLanes;
using cpu_vec::load_vec;
using cpu_vec::store_vec;
using cpu_vec::Vec;

// Tile sizes: output channels, output pixels and input channels per slice. Wide suits
// StyleGAN2's convolutions (O >= 32) up to 8 x 8 pixels, WideLong the larger images (each
// modulated weight tile then serves 256 pixels), Narrow the toRGB layers (O = 3), where a
// wide tile would multiply mostly zeros.
template <int BlockO, int BlockP, int BlockK>
struct Shape {
  static constexpr int kBlockO = BlockO, kBlockP = BlockP, kBlockK = BlockK;
};
using Wide = Shape<64, 64, 32>;
using WideLong = Shape<64, 256, 32>;
using Narrow = Shape<4, 256, 32>;
constexpr int64_t kNarrowMaxO = 4;
constexpr int64_t kWideMaxPixels = 64;

// The register tile of multiply_slice: kRows output channels x two vectors of pixels.
constexpr int kRows = 4;

// The modulated weight as the kernels multiply it: rounded to x's dtype S for fp16/bf16
// (the tensor-core operands), unchanged for float and double.
template <typename S, typename T> T round_to_input_dtype(T v) { return load_as<T>(StoreAs<S>::from(v)); }

// A unit of OpenMP work: one sample's pixel tile and a run of its output-channel tiles.
// Unlike the GPU (one block per output tile), a thread loads each input slice once and
// multiplies it into every output tile of the run, so the input gathers are amortised
// over up to O output channels instead of block_o.
struct WorkItem {
  int64_t n, p0, o_tile_begin, o_tile_end;
};

struct WorkGrid {
  TileGrid tiles;
  int64_t o_runs, run_length, count;
};

// As few runs per pixel tile as keep every thread busy (N = 1 at 8 x 8 pixels has one
// pixel tile per sample).
WorkGrid work_grid(const Params& p, int block_o, int block_p) {
  const TileGrid tiles = tile_grid(p, block_o, block_p);
  const int64_t pixel_tiles = p.n * tiles.p_tiles;
  const int64_t wanted = ceil_div(2 * int64_t(p.threads), pixel_tiles);
  const int64_t o_runs = wanted < tiles.o_tiles ? wanted : tiles.o_tiles;
  const int64_t run_length = ceil_div(tiles.o_tiles, o_runs);
  const int64_t runs = ceil_div(tiles.o_tiles, run_length);
  return {tiles, runs, run_length, pixel_tiles * runs};
}

WorkItem work_item(const WorkGrid& g, int block_p, int64_t index) {
  const int64_t run = index % g.o_runs, pixel_tile = index / g.o_runs;
  const int64_t begin = run * g.run_length, end = begin + g.run_length;
  return {pixel_tile / g.tiles.p_tiles, (pixel_tile % g.tiles.p_tiles) * block_p, begin,
          end < g.tiles.o_tiles ? end : g.tiles.o_tiles};
}

// One thread's tiles: a weight slice [BlockO][BlockK], an input slice [BlockK][BlockP], the
// accumulators of a run of output tiles [run][BlockO][BlockP] and the pixel tile's pixels.
template <typename T, class Sh>
struct Workspace {
  std::vector<T> weight = std::vector<T>(Sh::kBlockO * Sh::kBlockK);
  std::vector<T> input = std::vector<T>(Sh::kBlockK * Sh::kBlockP);
  std::vector<T> acc;
  std::vector<Pixel> pixels = std::vector<Pixel>(Sh::kBlockP);

  explicit Workspace(int64_t run_length) : acc(run_length * Sh::kBlockO * Sh::kBlockP) {}
};

// The tile loads loop over rows and columns (rather than tile_index's flat e, as a GPU
// thread does) so the compiler hoists each row's part of the indexing.
template <typename S, typename T, class Sh>
void load_weight_tile(const Params& p, const Tile& t, const KSlice& k, T* weight) {
  for (int row = 0; row < Sh::kBlockO; ++row)
    for (int col = 0; col < Sh::kBlockK; ++col)
      weight[row * Sh::kBlockK + col] = round_to_input_dtype<S>(modulated_weight<T>(p, t, k, row, col));
}

template <typename S, typename T, class Sh>
void load_input_tile(const Params& p, const Tile& t, const KSlice& k, const Pixel* pixels, T* input) {
  const S* x = static_cast<const S*>(p.x);
  const auto load = [x](int64_t offset) { return load_as<T>(x[offset]); };
  for (int row = 0; row < Sh::kBlockK; ++row)
    for (int col = 0; col < Sh::kBlockP; ++col)
      input[row * Sh::kBlockP + col] = im2col_value<T>(p, t, k, row, pixels[col], load);
}

// acc[BlockO][BlockP] += weight[BlockO][BlockK] input[BlockK][BlockP], in kRows x (2 vectors)
// register tiles; each accumulator sums the slice's channels in order.
template <typename T, class Sh>
void multiply_slice(const T* weight, const T* input, T* acc) {
  constexpr int kL = kLanes<T>;
  static_assert(Sh::kBlockO % kRows == 0 && Sh::kBlockP % (2 * kL) == 0, "tile sizes must fit the register tile");
  // Columns outer: one column strip of the input slice stays in L1 for every row group.
  for (int c0 = 0; c0 < Sh::kBlockP; c0 += 2 * kL) {
    for (int r0 = 0; r0 < Sh::kBlockO; r0 += kRows) {
      Vec<T> lo[kRows], hi[kRows];
      for (int r = 0; r < kRows; ++r) {
        lo[r] = load_vec(acc + (r0 + r) * Sh::kBlockP + c0);
        hi[r] = load_vec(acc + (r0 + r) * Sh::kBlockP + c0 + kL);
      }
      for (int kk = 0; kk < Sh::kBlockK; ++kk) {
        const Vec<T> b_lo = load_vec(input + kk * Sh::kBlockP + c0);
        const Vec<T> b_hi = load_vec(input + kk * Sh::kBlockP + c0 + kL);
        for (int r = 0; r < kRows; ++r) {
          const T a = weight[(r0 + r) * Sh::kBlockK + kk];
          lo[r] += a * b_lo;
          hi[r] += a * b_hi;
        }
      }
      for (int r = 0; r < kRows; ++r) {
        store_vec(acc + (r0 + r) * Sh::kBlockP + c0, lo[r]);
        store_vec(acc + (r0 + r) * Sh::kBlockP + c0 + kL, hi[r]);
      }
    }
  }
}

template <typename S, typename T, class Sh>
void store_tile(const Params& p, const Tile& t, const Pixel* pixels, const T* acc) {
  const S* noise = static_cast<const S*>(p.noise);
  const auto load_noise = [noise](int64_t offset) { return load_as<T>(noise[offset]); };
  const auto store = [out_compute = p.out_compute](void* base, int64_t offset, T v) {
    if (out_compute) static_cast<T*>(base)[offset] = v;
    else static_cast<S*>(base)[offset] = StoreAs<S>::from(v);
  };
  for (int e = 0; e < Sh::kBlockO * Sh::kBlockP; ++e) {
    const TileIndex at = tile_index(e, Sh::kBlockP);
    epilogue<T>(p, t, at.row, pixels[at.col], acc[e], load_noise, store);
  }
}

template <typename S, typename T, class Sh>
void compute_item(const Params& p, const WorkItem& item, int64_t slices, Workspace<T, Sh>& ws) {
  constexpr int64_t kTileSize = Sh::kBlockO * Sh::kBlockP;
  const auto tile = [&](int64_t o_tile) { return Tile{item.n, o_tile * Sh::kBlockO, item.p0}; };
  for (int col = 0; col < Sh::kBlockP; ++col) ws.pixels[col] = output_pixel(p, tile(0), col);
  std::fill(ws.acc.begin(), ws.acc.end(), T(0));
  for (int64_t index = 0; index < slices; ++index) {
    const KSlice k = k_slice_at(p, Sh::kBlockK, index);
    load_input_tile<S, T, Sh>(p, tile(0), k, ws.pixels.data(), ws.input.data());  // the same for every o-tile
    for (int64_t o_tile = item.o_tile_begin; o_tile < item.o_tile_end; ++o_tile) {
      load_weight_tile<S, T, Sh>(p, tile(o_tile), k, ws.weight.data());
      multiply_slice<T, Sh>(ws.weight.data(), ws.input.data(),
                            ws.acc.data() + (o_tile - item.o_tile_begin) * kTileSize);
    }
  }
  for (int64_t o_tile = item.o_tile_begin; o_tile < item.o_tile_end; ++o_tile)
    store_tile<S, T, Sh>(p, tile(o_tile), ws.pixels.data(), ws.acc.data() + (o_tile - item.o_tile_begin) * kTileSize);
}

template <typename S, typename T, class Sh>
void forward(const Params& p) {
  const WorkGrid grid = work_grid(p, Sh::kBlockO, Sh::kBlockP);
  const int64_t slices = k_slice_count(p, Sh::kBlockK);
#pragma omp parallel num_threads(p.threads) if (grid.count > 1)
  {
    Workspace<T, Sh> ws(grid.run_length);
#pragma omp for schedule(static)
    for (int64_t index = 0; index < grid.count; ++index)
      compute_item<S, T, Sh>(p, work_item(grid, Sh::kBlockP, index), slices, ws);
  }
}

// --- the weight gradient -----------------------------------------------------------------------

// Output channels x input channels per tile, and pixels per K-slice; narrow for toRGB.
using GradWide = Shape<64, 64, 32>;
using GradNarrow = Shape<4, 256, 32>;

// One thread's tiles: g [BlockO][BlockK], x transposed to [BlockK][BlockP] (BlockP: input
// channels here), a sample's pixel sum and the split's sum [BlockO][BlockP], and the slice's
// pixels.
template <typename T, class Sh>
struct GradWorkspace {
  std::vector<T> grad = std::vector<T>(Sh::kBlockO * Sh::kBlockK);
  std::vector<T> input = std::vector<T>(Sh::kBlockK * Sh::kBlockP);
  std::vector<T> inner = std::vector<T>(Sh::kBlockO * Sh::kBlockP);
  std::vector<T> acc = std::vector<T>(Sh::kBlockO * Sh::kBlockP);
  std::vector<Pixel> pixels = std::vector<Pixel>(Sh::kBlockK);
};

template <typename S, typename T, class Sh>
void weight_grad_tile(const WeightGradParams& p, const WeightGradTile& t, GradWorkspace<T, Sh>& ws) {
  const S* g = static_cast<const S*>(p.g);
  const S* x = static_cast<const S*>(p.x);
  const auto load_g = [g](int64_t offset) { return load_as<T>(g[offset]); };
  const auto load_x = [x](int64_t offset) { return load_as<T>(x[offset]); };
  const SplitRange range = split_range(p, t.split);
  std::fill(ws.acc.begin(), ws.acc.end(), T(0));
  for (int64_t n = range.n_lo; n < range.n_hi; ++n) {
    std::fill(ws.inner.begin(), ws.inner.end(), T(0));
    for (int64_t pix0 = range.p_lo; pix0 < range.p_hi; pix0 += Sh::kBlockK) {
      for (int k = 0; k < Sh::kBlockK; ++k) ws.pixels[k] = gradient_pixel(p, pix0 + k, range.p_hi);
      for (int row = 0; row < Sh::kBlockO; ++row)
        for (int k = 0; k < Sh::kBlockK; ++k)
          ws.grad[row * Sh::kBlockK + k] = gradient_value<T>(p, t, n, row, ws.pixels[k], load_g);
      for (int row = 0; row < Sh::kBlockP; ++row)
        for (int k = 0; k < Sh::kBlockK; ++k)
          ws.input[k * Sh::kBlockP + row] = shifted_input_value<T>(p, t, n, row, ws.pixels[k], load_x);
      multiply_slice<T, Sh>(ws.grad.data(), ws.input.data(), ws.inner.data());
    }
    for (int row = 0; row < Sh::kBlockO; ++row)
      for (int col = 0; col < Sh::kBlockP; ++col)
        ws.acc[row * Sh::kBlockP + col] += ws.inner[row * Sh::kBlockP + col] * sample_scale<T>(p, t, n, row, col);
  }
  for (int row = 0; row < Sh::kBlockO; ++row)
    for (int col = 0; col < Sh::kBlockP; ++col) store_weight_grad<T>(p, t, row, col, ws.acc[row * Sh::kBlockP + col]);
}

template <typename S, typename T, class Sh>
void weight_grad(const WeightGradParams& p) {
  const WeightGradGrid grid = weight_grad_grid(p, Sh::kBlockO, Sh::kBlockP);
#pragma omp parallel num_threads(p.threads) if (grid.count > 1)
  {
    GradWorkspace<T, Sh> ws;
#pragma omp for schedule(static)
    for (int64_t index = 0; index < grid.count; ++index)
      weight_grad_tile<S, T, Sh>(p, weight_grad_tile_at(p, grid, Sh::kBlockO, Sh::kBlockP, index), ws);
  }
}

}  // namespace

void forward_cpu_isa(const Params& p) {
  if (p.n == 0 || p.o == 0 || p.oh == 0 || p.ow == 0) return;
  with_host_dtype(p.dtype, "modulated_conv2d_cpu", [&](auto s, auto t) {
    using S = decltype(s);
    using T = decltype(t);
    if (p.o <= kNarrowMaxO) forward<S, T, Narrow>(p);
    else if (p.oh * p.ow > kWideMaxPixels) forward<S, T, WideLong>(p);
    else forward<S, T, Wide>(p);
  });
}

void weight_grad_cpu_isa(const WeightGradParams& p) {
  if (p.n == 0 || p.o == 0 || p.i == 0 || p.oh == 0 || p.ow == 0) return;  // as the CUDA launcher
  with_host_dtype(p.dtype, "modulated_conv2d_cpu", [&](auto s, auto t) {
    using S = decltype(s);
    using T = decltype(t);
    if (p.o <= kNarrowMaxO) weight_grad<S, T, GradNarrow>(p);
    else weight_grad<S, T, GradWide>(p);
  });
}

NGD_ISA_END
}  // namespace modulated_conv2d
}  // namespace ngd
