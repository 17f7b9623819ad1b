// modulated_conv2d forward (stride 1) on CUDA: an implicit GEMM over modconv.h's output
// tiles and K-slices, one block per tile (grid-stride over tiles, so any N fits in grid.x).
// Each slice's modulated weight tile and im2col input tile go to shared memory through
// modconv.h's per-element functions (each thread a strided subset), then:
// - fp32 / fp64: SIMT, each thread a register micro-tile of IEEE FMAs (no TF32);
// - fp16 / bf16: tensor cores through WMMA (16x16x16, fp32 accumulators), the modulated
//   weight rounded to x's dtype as in the Triton kernel; the accumulators go through
//   shared memory to the epilogue.
// The epilogue (demodulation, noise, bias, activation, gain, clamp) is modconv.h's too.
// The CPU twin (csrc/cpu/modconv_cpu.cpp) runs the same tile functions in loops.
#include <mma.h>

#include <algorithm>
#include <stdexcept>
#include <type_traits>

#include "nerfgan_distill/cuda_utils.cuh"
#include "nerfgan_distill/modconv.h"

namespace ngd {
namespace modconv {
namespace {

using cuda::load_as;
using cuda::StoreAs;

// More blocks than this loop over tiles instead (the grid stays within gridDim.x's limit).
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

// Output channels up to which the narrow tiles run (StyleGAN2's toRGB has O = 3).
constexpr int64_t kSimtNarrowMaxO = 4;
constexpr int64_t kWmmaNarrowMaxO = 16;

__device__ __forceinline__ float fma_ieee(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_ieee(double a, double b, double c) { return __fma_rn(a, b, c); }

// --- SIMT (fp32, fp64) ------------------------------------------------------------------------

// A tile of BlockO x BlockP outputs, MicroO x MicroP per thread. A thread's outputs are
// spread by the thread grid's width (rows thread_o + m * kThreadsO, columns thread_p +
// n * kThreadsP), so a warp reads consecutive shared-memory words and writes consecutive
// pixels.
template <int BlockO, int BlockP, int BlockK, int MicroO, int MicroP>
struct SimtShape {
  static constexpr int kBlockO = BlockO, kBlockP = BlockP, kBlockK = BlockK;
  static constexpr int kMicroO = MicroO, kMicroP = MicroP;
  static constexpr int kThreadsO = BlockO / MicroO, kThreadsP = BlockP / MicroP;
  static constexpr int kThreads = kThreadsO * kThreadsP;
  // The transposed weight tile's rows get one word of padding: its stores (threads
  // along k) then hit distinct banks.
  static constexpr int kLdWeight = BlockO + 1;
  static_assert(BlockO % MicroO == 0 && BlockP % MicroP == 0, "micro-tiles must cover the tile");
  // Every thread then loads input elements of one fixed column (pixel), computed once per tile.
  static_assert(kThreads % BlockP == 0, "the thread count must be a multiple of BlockP");
};
using SimtWide = SimtShape<64, 64, 16, 4, 4>;    // 256 threads
using SimtNarrow = SimtShape<4, 256, 16, 1, 4>;  // 256 threads

template <typename S, typename T, class Sh>
__global__ void __launch_bounds__(Sh::kThreads) simt_kernel(Params p) {
  __shared__ T weight[Sh::kBlockK * Sh::kLdWeight];  // [k][o]: a micro-tile column is one row
  __shared__ T input[Sh::kBlockK * Sh::kBlockP];     // [k][p]
  const S* __restrict__ x = static_cast<const S*>(p.x);
  const S* __restrict__ noise = static_cast<const S*>(p.noise);
  S* __restrict__ out = static_cast<S*>(p.out);
  const auto load_x = [x](int64_t offset) { return load_as<T>(x[offset]); };
  const auto load_noise = [noise](int64_t offset) { return load_as<T>(noise[offset]); };
  const auto store = [out](int64_t offset, T v) { out[offset] = StoreAs<S>::from(v); };

  const int tid = threadIdx.x;
  const int thread_o = tid / Sh::kThreadsP, thread_p = tid % Sh::kThreadsP;
  const TileGrid grid = tile_grid(p, Sh::kBlockO, Sh::kBlockP);
  const int64_t slices = k_slice_count(p, Sh::kBlockK);
  for (int64_t index = blockIdx.x; index < grid.count; index += gridDim.x) {  // uniform per block
    const Tile t = tile_at(grid, Sh::kBlockO, Sh::kBlockP, index);
    const Pixel load_pixel = output_pixel(p, t, tid % Sh::kBlockP);
    T acc[Sh::kMicroO][Sh::kMicroP];
#pragma unroll
    for (int m = 0; m < Sh::kMicroO; ++m)
#pragma unroll
      for (int n = 0; n < Sh::kMicroP; ++n) acc[m][n] = T(0);

    for (int64_t s = 0; s < slices; ++s) {
      const KSlice k = k_slice_at(p, Sh::kBlockK, s);
      for (int e = tid; e < Sh::kBlockO * Sh::kBlockK; e += Sh::kThreads) {
        const TileIndex at = tile_index(e, Sh::kBlockK);
        weight[at.col * Sh::kLdWeight + at.row] = modulated_weight<T>(p, t, k, at.row, at.col);
      }
      for (int e = tid; e < Sh::kBlockK * Sh::kBlockP; e += Sh::kThreads) {
        const TileIndex at = tile_index(e, Sh::kBlockP);  // at.col == tid % kBlockP
        input[e] = im2col_value<T>(p, t, k, at.row, load_pixel, load_x);
      }
      __syncthreads();  // the tiles are complete
#pragma unroll
      for (int kk = 0; kk < Sh::kBlockK; ++kk) {
        T a[Sh::kMicroO], b[Sh::kMicroP];
#pragma unroll
        for (int m = 0; m < Sh::kMicroO; ++m) a[m] = weight[kk * Sh::kLdWeight + thread_o + m * Sh::kThreadsO];
#pragma unroll
        for (int n = 0; n < Sh::kMicroP; ++n) b[n] = input[kk * Sh::kBlockP + thread_p + n * Sh::kThreadsP];
#pragma unroll
        for (int m = 0; m < Sh::kMicroO; ++m)
#pragma unroll
          for (int n = 0; n < Sh::kMicroP; ++n) acc[m][n] = fma_ieee(a[m], b[n], acc[m][n]);
      }
      __syncthreads();  // every thread is done reading before the next slice overwrites
    }

#pragma unroll
    for (int m = 0; m < Sh::kMicroO; ++m)
#pragma unroll
      for (int n = 0; n < Sh::kMicroP; ++n) {
        const int col = thread_p + n * Sh::kThreadsP;
        epilogue<T>(p, t, thread_o + m * Sh::kThreadsO, output_pixel(p, t, col), acc[m][n], load_noise, store);
      }
  }
}

// --- WMMA (fp16, bf16) ------------------------------------------------------------------------

// WarpsO x WarpsP warps, each FragsO x FragsP fragments of 16 x 16 outputs.
template <int WarpsO, int WarpsP, int FragsO, int FragsP, int BlockK>
struct WmmaShape {
  static constexpr int kFrag = 16;
  static constexpr int kWarpsP = WarpsP, kFragsO = FragsO, kFragsP = FragsP;
  static constexpr int kBlockO = WarpsO * FragsO * kFrag, kBlockP = WarpsP * FragsP * kFrag, kBlockK = BlockK;
  static constexpr int kThreads = 32 * WarpsO * WarpsP;
  // Row-major tiles with padded rows (against bank conflicts). WMMA wants leading
  // dimensions in multiples of 16 bytes and fragment pointers 32-byte aligned: with these
  // pads every fragment starts on a 32-byte boundary of a 32-byte aligned array.
  static constexpr int kLdA = BlockK + 8;       // weight [kBlockO][kLdA], x's dtype
  static constexpr int kLdB = kBlockP + 8;      // input [kBlockK][kLdB], x's dtype
  static constexpr int kLdC = kBlockP + 4;      // accumulators [kBlockO][kLdC], float
  static_assert(BlockK % kFrag == 0, "a slice must hold whole fragments");
  static_assert(kLdA % 8 == 0 && kLdB % 8 == 0 && kLdC % 4 == 0, "WMMA leading dimensions");
  static_assert(kThreads % kBlockP == 0, "the thread count must be a multiple of BlockP");
};
using WmmaWide = WmmaShape<2, 2, 2, 2, 32>;    // 64 x 64 outputs, 128 threads
using WmmaNarrow = WmmaShape<1, 4, 1, 2, 32>;  // 16 x 128 outputs, 128 threads

// bf16 fragments need sm_80; fp16 ones sm_70. The launcher refuses older GPUs.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
template <typename S> constexpr bool kWmmaCompiled = __CUDA_ARCH__ >= 700 && std::is_same<S, __half>::value;
#else
template <typename S> constexpr bool kWmmaCompiled = true;
#endif

template <typename S, class Sh>
__device__ __forceinline__ void wmma_tiles(const Params& p) {
  namespace wmma = nvcuda::wmma;
  constexpr int kF = Sh::kFrag;
  __shared__ __align__(32) S a_tile[Sh::kBlockO * Sh::kLdA];
  __shared__ __align__(32) S b_tile[Sh::kBlockK * Sh::kLdB];
  __shared__ __align__(32) float c_tile[Sh::kBlockO * Sh::kLdC];
  const S* __restrict__ x = static_cast<const S*>(p.x);
  const S* __restrict__ noise = static_cast<const S*>(p.noise);
  S* __restrict__ out = static_cast<S*>(p.out);
  const auto load_x = [x](int64_t offset) { return load_as<float>(x[offset]); };
  const auto load_noise = [noise](int64_t offset) { return load_as<float>(noise[offset]); };
  const auto store = [out](int64_t offset, float v) { out[offset] = StoreAs<S>::from(v); };

  const int tid = threadIdx.x, warp = tid / 32;
  const int frag_row0 = (warp / Sh::kWarpsP) * Sh::kFragsO * kF;  // this warp's first output row
  const int frag_col0 = (warp % Sh::kWarpsP) * Sh::kFragsP * kF;  // and column in the tile
  const TileGrid grid = tile_grid(p, Sh::kBlockO, Sh::kBlockP);
  const int64_t slices = k_slice_count(p, Sh::kBlockK);
  for (int64_t index = blockIdx.x; index < grid.count; index += gridDim.x) {  // uniform per block
    const Tile t = tile_at(grid, Sh::kBlockO, Sh::kBlockP, index);
    const Pixel load_pixel = output_pixel(p, t, tid % Sh::kBlockP);
    wmma::fragment<wmma::accumulator, kF, kF, kF, float> acc[Sh::kFragsO][Sh::kFragsP];
#pragma unroll
    for (int fo = 0; fo < Sh::kFragsO; ++fo)
#pragma unroll
      for (int fp = 0; fp < Sh::kFragsP; ++fp) wmma::fill_fragment(acc[fo][fp], 0.0f);

    for (int64_t s = 0; s < slices; ++s) {
      const KSlice k = k_slice_at(p, Sh::kBlockK, s);
      for (int e = tid; e < Sh::kBlockO * Sh::kBlockK; e += Sh::kThreads) {
        const TileIndex at = tile_index(e, Sh::kBlockK);
        a_tile[at.row * Sh::kLdA + at.col] = StoreAs<S>::from(modulated_weight<float>(p, t, k, at.row, at.col));
      }
      for (int e = tid; e < Sh::kBlockK * Sh::kBlockP; e += Sh::kThreads) {
        const TileIndex at = tile_index(e, Sh::kBlockP);  // at.col == tid % kBlockP
        // x's own values: the round trip through float is exact.
        b_tile[at.row * Sh::kLdB + at.col] = StoreAs<S>::from(im2col_value<float>(p, t, k, at.row, load_pixel, load_x));
      }
      __syncthreads();  // the tiles are complete
#pragma unroll
      for (int kk = 0; kk < Sh::kBlockK; kk += kF) {
        wmma::fragment<wmma::matrix_a, kF, kF, kF, S, wmma::row_major> a[Sh::kFragsO];
        wmma::fragment<wmma::matrix_b, kF, kF, kF, S, wmma::row_major> b[Sh::kFragsP];
#pragma unroll
        for (int fo = 0; fo < Sh::kFragsO; ++fo)
          wmma::load_matrix_sync(a[fo], a_tile + (frag_row0 + fo * kF) * Sh::kLdA + kk, Sh::kLdA);
#pragma unroll
        for (int fp = 0; fp < Sh::kFragsP; ++fp)
          wmma::load_matrix_sync(b[fp], b_tile + kk * Sh::kLdB + frag_col0 + fp * kF, Sh::kLdB);
#pragma unroll
        for (int fo = 0; fo < Sh::kFragsO; ++fo)
#pragma unroll
          for (int fp = 0; fp < Sh::kFragsP; ++fp) wmma::mma_sync(acc[fo][fp], a[fo], b[fp], acc[fo][fp]);
      }
      __syncthreads();  // every warp is done reading before the next slice overwrites
    }

#pragma unroll
    for (int fo = 0; fo < Sh::kFragsO; ++fo)
#pragma unroll
      for (int fp = 0; fp < Sh::kFragsP; ++fp)
        wmma::store_matrix_sync(c_tile + (frag_row0 + fo * kF) * Sh::kLdC + frag_col0 + fp * kF, acc[fo][fp],
                                Sh::kLdC, wmma::mem_row_major);
    __syncthreads();  // the accumulators are all in c_tile
    for (int e = tid; e < Sh::kBlockO * Sh::kBlockP; e += Sh::kThreads) {
      const TileIndex at = tile_index(e, Sh::kBlockP);
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

template <class Sh, typename Kernel>
void launch(Kernel kernel, const Params& p, cudaStream_t stream) {
  const TileGrid grid = tile_grid(p, Sh::kBlockO, Sh::kBlockP);
  const int64_t blocks = std::min(grid.count, kMaxBlocks);
  kernel<<<unsigned(blocks), Sh::kThreads, 0, stream>>>(p);
}

template <typename S, typename T>
void launch_simt(const Params& p, cudaStream_t stream) {
  if (p.o <= kSimtNarrowMaxO) launch<SimtNarrow>(simt_kernel<S, T, SimtNarrow>, p, stream);
  else launch<SimtWide>(simt_kernel<S, T, SimtWide>, p, stream);
}

template <typename S>
void launch_wmma(const Params& p, int device, cudaStream_t stream) {
  int major = 0;
  cuda::check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "modulated_conv2d_cuda",
              "cudaDeviceGetAttribute failed");
  if (major < (std::is_same<S, __half>::value ? 7 : 8))
    throw std::runtime_error("modulated_conv2d_cuda: fp16 needs a GPU of compute capability 7.0 and bf16 8.0");
  if (p.o <= kWmmaNarrowMaxO) launch<WmmaNarrow>(wmma_kernel<S, WmmaNarrow>, p, stream);
  else launch<WmmaWide>(wmma_kernel<S, WmmaWide>, p, stream);
}

}  // namespace

void forward_cuda(const Params& p, int device, std::uintptr_t stream_handle) {
  if (p.n == 0 || p.o == 0 || p.oh == 0 || p.ow == 0) return;
  cuda::DeviceGuard guard(device, "modulated_conv2d_cuda");
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_handle);
  switch (p.dtype) {
    case kFloat32: launch_simt<float, float>(p, stream); break;
    case kFloat64: launch_simt<double, double>(p, stream); break;
    case kFloat16: launch_wmma<__half>(p, device, stream); break;
    case kBFloat16: launch_wmma<__nv_bfloat16>(p, device, stream); break;
    default: throw std::invalid_argument("modulated_conv2d_cuda: unsupported dtype code");
  }
  cuda::check(cudaGetLastError(), "modulated_conv2d_cuda", "kernel launch failed");
}

}  // namespace modconv
}  // namespace ngd
