// modulated_conv2d's weight gradient (stride 1) on CUDA: per tap a GEMM with M = output
// channels, N = input channels and K = pixels, over modulated_conv2d.h's weight-gradient tiles (one
// block per tile of one tap and one split; grid-stride over tiles). For each sample of the
// split, each K-slice (block_k consecutive pixels) loads the A tile g [block_o x block_k] and
// the transposed B tile x [block_i x block_k] through modulated_conv2d.h's per-element functions, and
// modulated_conv2d_gemm.cuh multiplies them into the sample's pixel sum (SIMT for fp32 / fp64, WMMA
// for fp16 / bf16). The sum is then scaled by d[n, o] s[n, i] (sample_scale) into the
// split's accumulator, and the tile is stored, in the compute type, to the split's partial
// sum. The CPU twin (csrc/cpu/modulated_conv2d.cpp) runs the same tile functions in loops.
#include "modulated_conv2d_gemm.cuh"

namespace ngd {
namespace modulated_conv2d {
namespace {

using cuda::load_as;
using cuda::StoreAs;
using namespace gemm;

// Both kernels state a minimum of one block per SM: without it, ptxas (CUDA 13) gave some
// of them fewer registers for occupancy and spilled.
constexpr int kMinBlocks = 1;

// --- SIMT (fp32, fp64) ------------------------------------------------------------------------

template <typename S, typename T, class Sh>
__global__ void __launch_bounds__(Sh::kThreads, kMinBlocks) wgrad_simt_kernel(WeightGradParams p) {
  // Every thread loads elements of one fixed column (pixel of the slice): one Pixel per slice.
  static_assert(Sh::kThreads % Sh::kBlockK == 0, "the thread count must be a multiple of BlockK");
  // The B tile is transposed too ([k][i], loaded along k), so its rows get the same padding.
  constexpr int kLdB = Sh::kBlockN + 1;
  __shared__ T a_tile[Sh::kBlockK * Sh::kLdA];  // g [k][o]
  __shared__ T b_tile[Sh::kBlockK * kLdB];      // x [k][i]
  const S* __restrict__ g = static_cast<const S*>(p.g);
  const S* __restrict__ x = static_cast<const S*>(p.x);
  const auto load_g = [g](int64_t offset) { return load_as<T>(g[offset]); };
  const auto load_x = [x](int64_t offset) { return load_as<T>(x[offset]); };

  const int tid = threadIdx.x, col = tid % Sh::kBlockK;
  const int thread_o = tid / Sh::kThreadsN, thread_i = tid % Sh::kThreadsN;
  const WeightGradGrid grid = weight_grad_grid(p, Sh::kBlockM, Sh::kBlockN);
  for (int64_t index = blockIdx.x; index < grid.count; index += gridDim.x) {  // uniform per block
    const WeightGradTile t = weight_grad_tile_at(p, grid, Sh::kBlockM, Sh::kBlockN, index);
    const SplitRange split = split_range(p, t.split);
    T acc[Sh::kMicroM][Sh::kMicroN];
    zero(acc);

    for (int64_t n = split.n_lo; n < split.n_hi; ++n) {  // uniform per block
      T inner[Sh::kMicroM][Sh::kMicroN];  // the sample's pixel sum
      zero(inner);
      for (int64_t pix0 = split.p_lo; pix0 < split.p_hi; pix0 += Sh::kBlockK) {
        const Pixel px = gradient_pixel(p, pix0 + col, split.p_hi);
        const int lane = opaque(tid);  // == tid
        for (int e = lane; e < Sh::kBlockM * Sh::kBlockK; e += Sh::kThreads) {
          const int row = e / Sh::kBlockK;  // e % kBlockK == col
          a_tile[col * Sh::kLdA + row] = gradient_value<T>(p, t, n, row, px, load_g);
        }
        for (int e = lane; e < Sh::kBlockN * Sh::kBlockK; e += Sh::kThreads) {
          const int row = e / Sh::kBlockK;  // e % kBlockK == col
          b_tile[col * kLdB + row] = shifted_input_value<T>(p, t, n, row, px, load_x);
        }
        __syncthreads();  // the tiles are complete
        simt_multiply_slice<Sh, kLdB>(a_tile, b_tile, thread_o, thread_i, inner);
        __syncthreads();  // every thread is done reading before the next slice overwrites
      }
      const int sample_o = opaque(thread_o), sample_i = opaque(thread_i);  // as lane
#pragma unroll
      for (int m = 0; m < Sh::kMicroM; ++m)
#pragma unroll
        for (int j = 0; j < Sh::kMicroN; ++j) {
          const int row = sample_o + m * Sh::kThreadsM, c = sample_i + j * Sh::kThreadsN;
          acc[m][j] = fma_ieee(inner[m][j], sample_scale<T>(p, t, n, row, c), acc[m][j]);
        }
    }

#pragma unroll
    for (int m = 0; m < Sh::kMicroM; ++m)
#pragma unroll
      for (int j = 0; j < Sh::kMicroN; ++j)
        store_weight_grad<T>(p, t, thread_o + m * Sh::kThreadsM, thread_i + j * Sh::kThreadsN, acc[m][j]);
  }
}

// --- WMMA (fp16, bf16) ------------------------------------------------------------------------

// The split's sum, like the sample's, lives in accumulator fragments (registers). A
// fragment's element-to-(row, col) mapping is unspecified, but the same for all accumulator
// fragments of one shape, so the per-element scales go through shared memory into a
// fragment of their own and are applied element-wise: acc = inner * scale + acc. (Holding
// the split's sum as plain per-thread floats instead made ptxas keep 32 elements' row and
// column arithmetic live: 255 registers for the wide tile and spills for the narrow one.)
template <typename S, class Sh>
__device__ __forceinline__ void wgrad_wmma_tiles(const WeightGradParams& p) {
  namespace wmma = nvcuda::wmma;
  constexpr int kF = Sh::kFrag;
  static_assert(Sh::kThreads % Sh::kBlockK == 0, "the thread count must be a multiple of BlockK");
  __shared__ __align__(32) S a_tile[Sh::kBlockM * Sh::kLdA];     // g [o][k]
  __shared__ __align__(32) S b_tile[Sh::kBlockN * Sh::kLdBCol];  // x [i][k]: B column-major
  __shared__ __align__(32) float c_tile[Sh::kBlockM * Sh::kLdC];  // sample scales, then the tile's sums
  const S* __restrict__ g = static_cast<const S*>(p.g);
  const S* __restrict__ x = static_cast<const S*>(p.x);
  const auto load_g = [g](int64_t offset) { return load_as<float>(g[offset]); };
  const auto load_x = [x](int64_t offset) { return load_as<float>(x[offset]); };

  const int tid = threadIdx.x, warp = tid / 32, col = tid % Sh::kBlockK;
  const int frag_row0 = wmma_frag_row0<Sh>(warp), frag_col0 = wmma_frag_col0<Sh>(warp);
  const WeightGradGrid grid = weight_grad_grid(p, Sh::kBlockM, Sh::kBlockN);
  for (int64_t index = blockIdx.x; index < grid.count; index += gridDim.x) {  // uniform per block
    const WeightGradTile t = weight_grad_tile_at(p, grid, Sh::kBlockM, Sh::kBlockN, index);
    const SplitRange split = split_range(p, t.split);
    WmmaAccumulator<Sh> acc[Sh::kFragsM][Sh::kFragsN];    // the split's sum
    WmmaAccumulator<Sh> inner[Sh::kFragsM][Sh::kFragsN];  // the sample's pixel sum
    wmma_zero<Sh>(acc);
    wmma_zero<Sh>(inner);

    for (int64_t n = split.n_lo; n < split.n_hi; ++n) {  // uniform per block
      for (int64_t pix0 = split.p_lo; pix0 < split.p_hi; pix0 += Sh::kBlockK) {
        const Pixel px = gradient_pixel(p, pix0 + col, split.p_hi);
        const int lane = opaque(tid);  // == tid
        // g and x's own values: the round trips through float are exact.
        for (int e = lane; e < Sh::kBlockM * Sh::kBlockK; e += Sh::kThreads) {
          const int row = e / Sh::kBlockK;  // e % kBlockK == col
          a_tile[row * Sh::kLdA + col] = StoreAs<S>::from(gradient_value<float>(p, t, n, row, px, load_g));
        }
        for (int e = lane; e < Sh::kBlockN * Sh::kBlockK; e += Sh::kThreads) {
          const int row = e / Sh::kBlockK;  // e % kBlockK == col
          b_tile[row * Sh::kLdBCol + col] = StoreAs<S>::from(shifted_input_value<float>(p, t, n, row, px, load_x));
        }
        __syncthreads();  // the tiles are complete
        wmma_multiply_slice<Sh, wmma::col_major>(a_tile, b_tile, frag_row0, frag_col0, inner);
        __syncthreads();  // every warp is done reading before the next slice overwrites
      }

      for (int e = tid; e < Sh::kBlockM * Sh::kBlockN; e += Sh::kThreads) {
        const TileIndex at = tile_index(e, Sh::kBlockN);
        c_tile[at.row * Sh::kLdC + at.col] = sample_scale<float>(p, t, n, at.row, at.col);
      }
      __syncthreads();  // the scales are complete
#pragma unroll
      for (int fm = 0; fm < Sh::kFragsM; ++fm)
#pragma unroll
        for (int fn = 0; fn < Sh::kFragsN; ++fn) {
          WmmaAccumulator<Sh> scale;
          wmma::load_matrix_sync(scale, c_tile + (frag_row0 + fm * kF) * Sh::kLdC + frag_col0 + fn * kF, Sh::kLdC,
                                 wmma::mem_row_major);
#pragma unroll
          for (int k = 0; k < scale.num_elements; ++k)
            acc[fm][fn].x[k] = fma_ieee(inner[fm][fn].x[k], scale.x[k], acc[fm][fn].x[k]);
          wmma::fill_fragment(inner[fm][fn], 0.0f);
        }
      // Every warp has read its scales before the next sample's overwrite them (with an
      // empty pixel range no slice would separate the two).
      __syncthreads();
    }

    wmma_store<Sh>(c_tile, frag_row0, frag_col0, acc);
    __syncthreads();  // the sums are all in c_tile
    for (int e = tid; e < Sh::kBlockM * Sh::kBlockN; e += Sh::kThreads) {
      const TileIndex at = tile_index(e, Sh::kBlockN);
      store_weight_grad<float>(p, t, at.row, at.col, c_tile[at.row * Sh::kLdC + at.col]);
    }
    __syncthreads();  // the stores are done reading c_tile before the next tile writes it
  }
}

template <typename S, class Sh>
__global__ void __launch_bounds__(Sh::kThreads, kMinBlocks) wgrad_wmma_kernel(WeightGradParams p) {
  if constexpr (kWmmaCompiled<S>) {
    wgrad_wmma_tiles<S, Sh>(p);
  } else {
    __trap();  // not reached: the launcher checks the GPU's compute capability
  }
}

// --- launch -----------------------------------------------------------------------------------

// The weight-gradient kernel of each tile shape, one block per tile (launch_gemm picks).
struct WeightGradKernels {
  template <typename S, typename T, class Sh>
  static void simt(const WeightGradParams& p, cudaStream_t stream) {
    launch_tiles(wgrad_simt_kernel<S, T, Sh>, weight_grad_grid(p, Sh::kBlockM, Sh::kBlockN).count, Sh::kThreads, p,
                 stream);
  }
  template <typename S, class Sh>
  static void wmma(const WeightGradParams& p, cudaStream_t stream) {
    launch_tiles(wgrad_wmma_kernel<S, Sh>, weight_grad_grid(p, Sh::kBlockM, Sh::kBlockN).count, Sh::kThreads, p,
                 stream);
  }
};

}  // namespace

void weight_grad_cuda(const WeightGradParams& p, int device, std::uintptr_t stream_handle) {
  // Nothing to sum: the caller never asks (such convolutions take the composite path).
  if (p.n == 0 || p.o == 0 || p.i == 0 || p.oh * p.ow == 0) return;
  cuda::DeviceGuard guard(device, "modulated_conv2d_weight_grad_cuda");
  launch_gemm<WeightGradKernels>(p, device, reinterpret_cast<cudaStream_t>(stream_handle),
                                 "modulated_conv2d_weight_grad_cuda");
}

}  // namespace modulated_conv2d
}  // namespace ngd
