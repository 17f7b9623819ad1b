// The GEMM pieces that modulated_conv2d's CUDA kernels share: the forward
// (modulated_conv2d.cu: M = output channels, N = output pixels, K = input channels x taps) and
// the weight gradient (modulated_conv2d_weight_grad.cu: M = output channels, N = input channels,
// K = pixels). Each kernel fills its shared-memory tiles through modulated_conv2d.h's per-element
// functions; the multiplies of one K-slice are here:
// - fp32 / fp64: SIMT, each thread a register micro-tile of IEEE FMAs (no TF32);
// - fp16 / bf16: tensor cores through WMMA (16x16x16, fp32 accumulators).
#pragma once

#include <mma.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "nerfgan_distill/cuda_utils.cuh"
#include "nerfgan_distill/modulated_conv2d.h"

namespace ngd {
namespace modulated_conv2d {
namespace gemm {

// More blocks than this loop over tiles instead (the grid stays within gridDim.x's limit).
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

// Output channels up to which the narrow tiles run (StyleGAN2's toRGB has O = 3).
constexpr int64_t kSimtNarrowMaxO = 4;
constexpr int64_t kWmmaNarrowMaxO = 16;

// Explicit round-to-nearest FMAs: the compiler neither splits nor re-contracts them.
__device__ __forceinline__ float fma_ieee(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_ieee(double a, double b, double c) { return __fma_rn(a, b, c); }

// Returns v, but hides that from the optimizer. A tile load's per-element indexing (rows,
// 64-bit row offsets, bounds tests) is the same for every K-slice and sample, so the compiler
// hoists it out of those loops, one set of registers per element of a thread: wanting up to
// 255 registers, or spilling under a cap. Deriving the indexing from opaque(tid) inside
// the loop makes it be recomputed there, a few integer operations per element.
__device__ __forceinline__ int opaque(int v) {
  asm volatile("" : "+r"(v));
  return v;
}

// --- SIMT (fp32, fp64) ------------------------------------------------------------------------

// A tile of BlockM x BlockN outputs, MicroM x MicroN per thread. A thread's outputs are
// spread by the thread grid's width (rows thread_m + m * kThreadsM, columns thread_n +
// n * kThreadsN), so a warp reads consecutive shared-memory words and writes consecutive
// outputs.
template <int BlockM, int BlockN, int BlockK, int MicroM, int MicroN>
struct SimtShape {
  static constexpr int kBlockM = BlockM, kBlockN = BlockN, kBlockK = BlockK;
  static constexpr int kMicroM = MicroM, kMicroN = MicroN;
  static constexpr int kThreadsM = BlockM / MicroM, kThreadsN = BlockN / MicroN;
  static constexpr int kThreads = kThreadsM * kThreadsN;
  // The A tile is stored transposed, [k][m], its rows padded by one word: its stores
  // (threads along k) then spread over the banks.
  static constexpr int kLdA = BlockM + 1;
  static_assert(BlockM % MicroM == 0 && BlockN % MicroN == 0, "micro-tiles must cover the tile");
};
using SimtWide = SimtShape<64, 64, 16, 4, 4>;    // 256 threads
using SimtNarrow = SimtShape<4, 256, 16, 1, 4>;  // 256 threads

// acc += A B over one K-slice for this thread's micro-tile: a is the A tile [k][m] (leading
// dimension Sh::kLdA), b the B tile [k][n] (leading dimension LdB). Each accumulator sums
// the slice's k in order.
template <class Sh, int LdB, typename T>
__device__ __forceinline__ void simt_multiply_slice(const T* a, const T* b, int thread_m, int thread_n,
                                                    T (&acc)[Sh::kMicroM][Sh::kMicroN]) {
#pragma unroll
  for (int kk = 0; kk < Sh::kBlockK; ++kk) {
    T a_k[Sh::kMicroM], b_k[Sh::kMicroN];
#pragma unroll
    for (int m = 0; m < Sh::kMicroM; ++m) a_k[m] = a[kk * Sh::kLdA + thread_m + m * Sh::kThreadsM];
#pragma unroll
    for (int n = 0; n < Sh::kMicroN; ++n) b_k[n] = b[kk * LdB + thread_n + n * Sh::kThreadsN];
#pragma unroll
    for (int m = 0; m < Sh::kMicroM; ++m)
#pragma unroll
      for (int n = 0; n < Sh::kMicroN; ++n) acc[m][n] = fma_ieee(a_k[m], b_k[n], acc[m][n]);
  }
}

template <typename T, int Rows, int Cols>
__device__ __forceinline__ void zero(T (&acc)[Rows][Cols]) {
#pragma unroll
  for (int m = 0; m < Rows; ++m)
#pragma unroll
    for (int n = 0; n < Cols; ++n) acc[m][n] = T(0);
}

// --- WMMA (fp16, bf16) ------------------------------------------------------------------------

// WarpsM x WarpsN warps, each FragsM x FragsN fragments of 16 x 16 outputs.
template <int WarpsM, int WarpsN, int FragsM, int FragsN, int BlockK>
struct WmmaShape {
  static constexpr int kFrag = 16;
  static constexpr int kWarpsN = WarpsN, kFragsM = FragsM, kFragsN = FragsN;
  static constexpr int kBlockM = WarpsM * FragsM * kFrag, kBlockN = WarpsN * FragsN * kFrag, kBlockK = BlockK;
  static constexpr int kThreads = 32 * WarpsM * WarpsN;
  // Tiles with padded rows (against bank conflicts). WMMA wants leading dimensions in
  // multiples of 16 bytes and fragment pointers 32-byte aligned: with these pads every
  // fragment starts on a 32-byte boundary of a 32-byte aligned array.
  static constexpr int kLdA = BlockK + 8;      // A [kBlockM][kLdA] (row-major), x's dtype
  static constexpr int kLdBRow = kBlockN + 8;  // B [kBlockK][kLdBRow] (row-major), x's dtype
  static constexpr int kLdBCol = BlockK + 8;   // B [kBlockN][kLdBCol] (column-major), x's dtype
  static constexpr int kLdC = kBlockN + 4;     // accumulators [kBlockM][kLdC], float
  static_assert(BlockK % kFrag == 0, "a slice must hold whole fragments");
  static_assert(kLdA % 8 == 0 && kLdBRow % 8 == 0 && kLdBCol % 8 == 0 && kLdC % 4 == 0, "WMMA leading dimensions");
};
using WmmaWide = WmmaShape<2, 2, 2, 2, 32>;    // 64 x 64 outputs, 128 threads
using WmmaNarrow = WmmaShape<1, 4, 1, 2, 32>;  // 16 x 128 outputs, 128 threads

// bf16 fragments need sm_80; fp16 ones sm_70. The launchers refuse older GPUs
// (require_wmma), and the kernels compile their body only where it exists.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
template <typename S> inline constexpr bool kWmmaCompiled = __CUDA_ARCH__ >= 700 && std::is_same<S, __half>::value;
#else
template <typename S> inline constexpr bool kWmmaCompiled = true;
#endif

template <class Sh>
using WmmaAccumulator = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, Sh::kFrag, Sh::kFrag, Sh::kFrag, float>;

// This warp's first output row and column in the tile.
template <class Sh>
__device__ __forceinline__ int wmma_frag_row0(int warp) { return (warp / Sh::kWarpsN) * Sh::kFragsM * Sh::kFrag; }
template <class Sh>
__device__ __forceinline__ int wmma_frag_col0(int warp) { return (warp % Sh::kWarpsN) * Sh::kFragsN * Sh::kFrag; }

template <class Sh>
__device__ __forceinline__ void wmma_zero(WmmaAccumulator<Sh> (&acc)[Sh::kFragsM][Sh::kFragsN]) {
#pragma unroll
  for (int fm = 0; fm < Sh::kFragsM; ++fm)
#pragma unroll
    for (int fn = 0; fn < Sh::kFragsN; ++fn) nvcuda::wmma::fill_fragment(acc[fm][fn], 0.0f);
}

// acc += A B over one K-slice for this warp's fragments: a_tile is A row-major
// [kBlockM][kLdA]; b_tile is B row-major [kBlockK][kLdBRow] (LayoutB = wmma::row_major) or
// column-major, stored [kBlockN][kLdBCol] (LayoutB = wmma::col_major).
template <class Sh, typename LayoutB, typename S>
__device__ __forceinline__ void wmma_multiply_slice(const S* a_tile, const S* b_tile, int frag_row0, int frag_col0,
                                                    WmmaAccumulator<Sh> (&acc)[Sh::kFragsM][Sh::kFragsN]) {
  namespace wmma = nvcuda::wmma;
  constexpr int kF = Sh::kFrag;
  constexpr bool kRowB = std::is_same<LayoutB, wmma::row_major>::value;
  static_assert(kRowB || std::is_same<LayoutB, wmma::col_major>::value, "B is row- or column-major");
#pragma unroll
  for (int kk = 0; kk < Sh::kBlockK; kk += kF) {
    wmma::fragment<wmma::matrix_a, kF, kF, kF, S, wmma::row_major> a[Sh::kFragsM];
    wmma::fragment<wmma::matrix_b, kF, kF, kF, S, LayoutB> b[Sh::kFragsN];
#pragma unroll
    for (int fm = 0; fm < Sh::kFragsM; ++fm)
      wmma::load_matrix_sync(a[fm], a_tile + (frag_row0 + fm * kF) * Sh::kLdA + kk, Sh::kLdA);
#pragma unroll
    for (int fn = 0; fn < Sh::kFragsN; ++fn) {
      const int col = frag_col0 + fn * kF;
      if constexpr (kRowB) wmma::load_matrix_sync(b[fn], b_tile + kk * Sh::kLdBRow + col, Sh::kLdBRow);
      else wmma::load_matrix_sync(b[fn], b_tile + col * Sh::kLdBCol + kk, Sh::kLdBCol);
    }
#pragma unroll
    for (int fm = 0; fm < Sh::kFragsM; ++fm)
#pragma unroll
      for (int fn = 0; fn < Sh::kFragsN; ++fn) wmma::mma_sync(acc[fm][fn], a[fm], b[fn], acc[fm][fn]);
  }
}

// Stores this warp's fragments to the float tile c_tile [kBlockM][kLdC].
template <class Sh>
__device__ __forceinline__ void wmma_store(float* c_tile, int frag_row0, int frag_col0,
                                           const WmmaAccumulator<Sh> (&acc)[Sh::kFragsM][Sh::kFragsN]) {
  constexpr int kF = Sh::kFrag;
#pragma unroll
  for (int fm = 0; fm < Sh::kFragsM; ++fm)
#pragma unroll
    for (int fn = 0; fn < Sh::kFragsN; ++fn)
      nvcuda::wmma::store_matrix_sync(c_tile + (frag_row0 + fm * kF) * Sh::kLdC + frag_col0 + fn * kF, acc[fm][fn],
                                      Sh::kLdC, nvcuda::wmma::mem_row_major);
}

// --- launch -----------------------------------------------------------------------------------

// One block per tile, at most kMaxBlocks (the kernels grid-stride over the rest).
template <typename Kernel, typename P>
void launch_tiles(Kernel kernel, int64_t tiles, int threads, const P& p, cudaStream_t stream) {
  const int64_t blocks = std::min(tiles, kMaxBlocks);
  kernel<<<unsigned(blocks), threads, 0, stream>>>(p);
}

// Throws unless `device` runs S's WMMA fragments (fp16: compute capability 7.0, bf16: 8.0).
template <typename S>
void require_wmma(int device, const char* op) {
  int major = 0;
  cuda::check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), op,
              "cudaDeviceGetAttribute failed");
  if (major < (std::is_same<S, __half>::value ? 7 : 8))
    throw std::runtime_error(std::string(op) + ": fp16 needs a GPU of compute capability 7.0 and bf16 8.0");
}

// Launches one GEMM's kernel for p's dtype and output channels (p.o): SIMT tiles for
// fp32 / fp64, WMMA tiles for fp16 / bf16 (on a GPU that runs them), and the narrow shape
// for few output channels. Kernels launches the kernel of a shape:
//   template <typename S, typename T, class Sh> static void simt(const P&, cudaStream_t);
//   template <typename S, class Sh> static void wmma(const P&, cudaStream_t);
template <class Kernels, typename T, class P>
void launch_simt(const P& p, cudaStream_t stream) {
  if (p.o <= kSimtNarrowMaxO) Kernels::template simt<T, T, SimtNarrow>(p, stream);
  else Kernels::template simt<T, T, SimtWide>(p, stream);
}

template <class Kernels, typename S, class P>
void launch_wmma(const P& p, int device, cudaStream_t stream, const char* op) {
  require_wmma<S>(device, op);
  if (p.o <= kWmmaNarrowMaxO) Kernels::template wmma<S, WmmaNarrow>(p, stream);
  else Kernels::template wmma<S, WmmaWide>(p, stream);
}

template <class Kernels, class P>
void launch_gemm(const P& p, int device, cudaStream_t stream, const char* op) {
  switch (p.dtype) {
    case kFloat32: launch_simt<Kernels, float>(p, stream); break;
    case kFloat64: launch_simt<Kernels, double>(p, stream); break;
    case kFloat16: launch_wmma<Kernels, __half>(p, device, stream, op); break;
    case kBFloat16: launch_wmma<Kernels, __nv_bfloat16>(p, device, stream, op); break;
    default: throw std::invalid_argument(std::string(op) + ": unsupported dtype code");
  }
  cuda::check(cudaGetLastError(), op, "kernel launch failed");
}

}  // namespace gemm
}  // namespace modulated_conv2d
}  // namespace ngd
