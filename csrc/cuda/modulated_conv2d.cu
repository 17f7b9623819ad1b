// modulated_conv2d forward (stride 1) on CUDA: an implicit GEMM over modulated_conv2d.h's output
// tiles and K-slices, one block per tile (grid-stride over tiles, so any N fits in grid.x).
// Each slice's modulated weight tile and im2col input tile go to shared memory through
// modulated_conv2d.h's per-element functions (each thread a strided subset), then modulated_conv2d_gemm.cuh
// multiplies them:
// - fp32 / fp64: SIMT, each thread a register micro-tile of IEEE FMAs (no TF32);
// - fp16 / bf16: tensor cores through WMMA (16x16x16, fp32 accumulators), the modulated
//   weight rounded to x's dtype as in the Triton kernel; the accumulators go through
//   shared memory to the epilogue.
// The epilogue (demodulation, noise, bias, activation, gain, clamp) is modulated_conv2d.h's too.
// The CPU twin (csrc/cpu/modulated_conv2d.cpp) runs the same tile functions in loops. The
// weight gradient's kernels are in modulated_conv2d_weight_grad.cu.
#include "modulated_conv2d_gemm.cuh"

namespace ngd {
namespace modulated_conv2d {
namespace {

using cuda::load_as;
using cuda::StoreAs;
using namespace gemm;

// Writes out or v (epilogue's base) at an element offset: in x's dtype S, or in the
// compute type T when the caller asked for it (out_compute).
template <typename S, typename T>
struct OutputStore {
  bool out_compute;
  __device__ void operator()(void* base, int64_t offset, T v) const {
    if (out_compute) static_cast<T*>(base)[offset] = v;
    else static_cast<S*>(base)[offset] = StoreAs<S>::from(v);
  }
};

// --- SIMT (fp32, fp64): M = output channels, N = output pixels --------------------------------

// fp32 asks for three blocks per SM (at most 85 registers): ptxas then fits it in 80 on
// every CI arch, where by itself it chose 110 (wide) or 64 with a spill (narrow) on
// sm_86 / sm_89. fp64 keeps ptxas's choice (0: no minimum), which does not spill.
template <typename T>
constexpr int kSimtMinBlocks = sizeof(T) == 4 ? 3 : 0;

template <typename S, typename T, class Sh>
__global__ void __launch_bounds__(Sh::kThreads, kSimtMinBlocks<T>) simt_kernel(Params p) {
  // Every thread loads input elements of one fixed column (pixel), computed once per tile.
  static_assert(Sh::kThreads % Sh::kBlockN == 0, "the thread count must be a multiple of BlockN");
  __shared__ T weight[Sh::kBlockK * Sh::kLdA];  // [k][o]: a micro-tile column is one row
  __shared__ T input[Sh::kBlockK * Sh::kBlockN];  // [k][p]
  const S* __restrict__ x = static_cast<const S*>(p.x);
  const S* __restrict__ noise = static_cast<const S*>(p.noise);
  const auto load_x = [x](int64_t offset) { return load_as<T>(x[offset]); };
  const auto load_noise = [noise](int64_t offset) { return load_as<T>(noise[offset]); };
  const OutputStore<S, T> store{p.out_compute};

  const int tid = threadIdx.x;
  const int thread_o = tid / Sh::kThreadsN, thread_p = tid % Sh::kThreadsN;
  const TileGrid grid = tile_grid(p, Sh::kBlockM, Sh::kBlockN);
  const int64_t slices = k_slice_count(p, Sh::kBlockK);
  for (int64_t index = blockIdx.x; index < grid.count; index += gridDim.x) {  // uniform per block
    const Tile t = tile_at(grid, Sh::kBlockM, Sh::kBlockN, index);
    const Pixel load_pixel = output_pixel(p, t, tid % Sh::kBlockN);
    T acc[Sh::kMicroM][Sh::kMicroN];
    zero(acc);

    for (int64_t s = 0; s < slices; ++s) {
      const KSlice k = k_slice_at(p, Sh::kBlockK, s);
      for (int e = tid; e < Sh::kBlockM * Sh::kBlockK; e += Sh::kThreads) {
        const TileIndex at = tile_index(e, Sh::kBlockK);
        weight[at.col * Sh::kLdA + at.row] = modulated_weight<T>(p, t, k, at.row, at.col);
      }
      for (int e = tid; e < Sh::kBlockK * Sh::kBlockN; e += Sh::kThreads) {
        const TileIndex at = tile_index(e, Sh::kBlockN);  // at.col == tid % kBlockN
        input[e] = im2col_value<T>(p, t, k, at.row, load_pixel, load_x);
      }
      __syncthreads();  // the tiles are complete
      simt_multiply_slice<Sh, Sh::kBlockN>(weight, input, thread_o, thread_p, acc);
      __syncthreads();  // every thread is done reading before the next slice overwrites
    }

#pragma unroll
    for (int m = 0; m < Sh::kMicroM; ++m)
#pragma unroll
      for (int n = 0; n < Sh::kMicroN; ++n) {
        const int col = thread_p + n * Sh::kThreadsN;
        epilogue<T>(p, t, thread_o + m * Sh::kThreadsM, output_pixel(p, t, col), acc[m][n], load_noise, store);
      }
  }
}

// --- WMMA (fp16, bf16): M = output channels, N = output pixels --------------------------------

template <typename S, class Sh>
__device__ __forceinline__ void wmma_tiles(const Params& p) {
  namespace wmma = nvcuda::wmma;
  static_assert(Sh::kThreads % Sh::kBlockN == 0, "the thread count must be a multiple of BlockN");
  __shared__ __align__(32) S a_tile[Sh::kBlockM * Sh::kLdA];     // weight [o][k]
  __shared__ __align__(32) S b_tile[Sh::kBlockK * Sh::kLdBRow];  // input [k][p]
  __shared__ __align__(32) float c_tile[Sh::kBlockM * Sh::kLdC];
  const S* __restrict__ x = static_cast<const S*>(p.x);
  const S* __restrict__ noise = static_cast<const S*>(p.noise);
  const auto load_x = [x](int64_t offset) { return load_as<float>(x[offset]); };
  const auto load_noise = [noise](int64_t offset) { return load_as<float>(noise[offset]); };
  const OutputStore<S, float> store{p.out_compute};  // fp16 / bf16 compute in float

  const int tid = threadIdx.x, warp = tid / 32;
  const int frag_row0 = wmma_frag_row0<Sh>(warp), frag_col0 = wmma_frag_col0<Sh>(warp);
  const TileGrid grid = tile_grid(p, Sh::kBlockM, Sh::kBlockN);
  const int64_t slices = k_slice_count(p, Sh::kBlockK);
  for (int64_t index = blockIdx.x; index < grid.count; index += gridDim.x) {  // uniform per block
    const Tile t = tile_at(grid, Sh::kBlockM, Sh::kBlockN, index);
    const Pixel load_pixel = output_pixel(p, t, tid % Sh::kBlockN);
    WmmaAccumulator<Sh> acc[Sh::kFragsM][Sh::kFragsN];
    wmma_zero<Sh>(acc);

    for (int64_t s = 0; s < slices; ++s) {
      const KSlice k = k_slice_at(p, Sh::kBlockK, s);
      for (int e = tid; e < Sh::kBlockM * Sh::kBlockK; e += Sh::kThreads) {
        const TileIndex at = tile_index(e, Sh::kBlockK);
        a_tile[at.row * Sh::kLdA + at.col] = StoreAs<S>::from(modulated_weight<float>(p, t, k, at.row, at.col));
      }
      for (int e = tid; e < Sh::kBlockK * Sh::kBlockN; e += Sh::kThreads) {
        const TileIndex at = tile_index(e, Sh::kBlockN);  // at.col == tid % kBlockN
        // x's own values: the round trip through float is exact.
        b_tile[at.row * Sh::kLdBRow + at.col] =
            StoreAs<S>::from(im2col_value<float>(p, t, k, at.row, load_pixel, load_x));
      }
      __syncthreads();  // the tiles are complete
      wmma_multiply_slice<Sh, wmma::row_major>(a_tile, b_tile, frag_row0, frag_col0, acc);
      __syncthreads();  // every warp is done reading before the next slice overwrites
    }

    wmma_store<Sh>(c_tile, frag_row0, frag_col0, acc);
    __syncthreads();  // the accumulators are all in c_tile
    for (int e = tid; e < Sh::kBlockM * Sh::kBlockN; e += Sh::kThreads) {
      const TileIndex at = tile_index(e, Sh::kBlockN);
      epilogue<float>(p, t, at.row, output_pixel(p, t, at.col), c_tile[at.row * Sh::kLdC + at.col], load_noise,
                      store);
    }
    __syncthreads();  // the epilogue is done reading c_tile before the next tile writes it
  }
}

template <typename S, class Sh>
__global__ void __launch_bounds__(Sh::kThreads) wmma_kernel(Params p) {
  if constexpr (kWmmaCompiled<S>) {
    wmma_tiles<S, Sh>(p);
  } else {
    __trap();  // not reached: the launcher checks the GPU's compute capability
  }
}

// --- launch -----------------------------------------------------------------------------------

// The forward kernel of each tile shape, one block per output tile (launch_gemm picks).
struct ForwardKernels {
  template <typename S, typename T, class Sh>
  static void simt(const Params& p, cudaStream_t stream) {
    launch_tiles(simt_kernel<S, T, Sh>, tile_grid(p, Sh::kBlockM, Sh::kBlockN).count, Sh::kThreads, p, stream);
  }
  template <typename S, class Sh>
  static void wmma(const Params& p, cudaStream_t stream) {
    launch_tiles(wmma_kernel<S, Sh>, tile_grid(p, Sh::kBlockM, Sh::kBlockN).count, Sh::kThreads, p, stream);
  }
};

}  // namespace

void forward_cuda(const Params& p, int device, std::uintptr_t stream_handle) {
  if (p.n == 0 || p.o == 0 || p.oh == 0 || p.ow == 0) return;
  cuda::DeviceGuard guard(device, "modulated_conv2d_cuda");
  launch_gemm<ForwardKernels>(p, device, reinterpret_cast<cudaStream_t>(stream_handle), "modulated_conv2d_cuda");
}

}  // namespace modulated_conv2d
}  // namespace ngd
