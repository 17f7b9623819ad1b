// filtered_lrelu on CUDA: one thread block per tile of output pixels of one (n, c) plane. The
// block loads the input window its tile needs into shared memory (bias added), makes the
// intermediate tile there (separable filters as a row pass and a column pass, dense ones
// through window_sum), applies the pointwise step, and filters it down into the output, so t
// never reaches global memory; only the 1-byte sign codes do, each written by the one tile that
// owns its row and column band. The per-sample math is the shared header's, which the CPU
// backend runs under test on every machine.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "nerfgan_distill/cuda_utils.cuh"
#include "nerfgan_distill/filtered_lrelu.h"

namespace ngd {
namespace filtered_lrelu {
namespace {

constexpr int kThreads = 256;
constexpr size_t kMaxSharedBytes = 48 * 1024;  // the default dynamic shared memory limit

__device__ __forceinline__ int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The shared-memory tile geometry of one launch.
struct Tile {
  int out_h, out_w;  // outputs per tile
  int t_h, t_w;      // intermediate samples the tile needs
  int in_h, in_w;    // input samples those need
  int64_t tiles_y, tiles_x;

  size_t floats(const Params& p) const {
    return size_t(in_h) * in_w + (p.fa_separable ? size_t(in_h) * t_w : 0) + size_t(t_h) * t_w +
           (p.fb_separable ? size_t(t_h) * out_w : 0);
  }
};

Tile make_tile(const Params& p, int out_h, int out_w) {
  Tile t;
  t.out_h = out_h;
  t.out_w = out_w;
  t.t_h = (out_h - 1) * p.down + p.fb_h;
  t.t_w = (out_w - 1) * p.down + p.fb_w;
  t.in_h = (t.t_h + p.fa_h - 2) / p.up + 2;  // rows of the zero-inserted window [u0, u0 + t_h + fa_h - 1)
  t.in_w = (t.t_w + p.fa_w - 2) / p.up + 2;
  t.tiles_y = (p.out_h + out_h - 1) / out_h;
  t.tiles_x = (p.out_w + out_w - 1) / out_w;
  return t;
}

template <typename S, typename T, bool kForward>
__global__ void filtered_lrelu_kernel(Params p, Tile tile) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* x_s = reinterpret_cast<T*>(smem);
  T* rows_a = x_s + tile.in_h * tile.in_w;
  T* t_s = rows_a + (p.fa_separable ? tile.in_h * tile.t_w : 0);
  T* rows_b = t_s + tile.t_h * tile.t_w;
  const S* __restrict__ x = static_cast<const S*>(p.x);
  const S* __restrict__ b = static_cast<const S*>(p.b);
  const T* __restrict__ fa = static_cast<const T*>(p.fa);
  const T* __restrict__ fb = static_cast<const T*>(p.fb);
  S* __restrict__ out = static_cast<S*>(p.out);
  const T gain = T(p.gain), slope = T(p.slope), clamp = T(p.clamp);
  const int64_t tiles = p.n * p.c * tile.tiles_y * tile.tiles_x;
  for (int64_t id = blockIdx.x; id < tiles; id += gridDim.x) {
    const int64_t tile_x = id % tile.tiles_x, tile_y = (id / tile.tiles_x) % tile.tiles_y;
    const int64_t plane = id / (tile.tiles_x * tile.tiles_y);
    const int64_t n = plane / p.c, c = plane % p.c;
    const int64_t oy0 = tile_y * tile.out_h, ox0 = tile_x * tile.out_w;
    const int64_t ty0 = oy0 * p.down - p.pad_by0, tx0 = ox0 * p.down - p.pad_bx0;  // the tile's t window
    const int64_t iy0 = floor_div(ty0 - p.pad_ay0 + p.up - 1, p.up);             // first input row it reads
    const int64_t ix0 = floor_div(tx0 - p.pad_ax0 + p.up - 1, p.up);
    const T bias = (kForward && b) ? cuda::load_as<T>(b[c]) : T(0);
    const S* src = x + n * p.sx_n + c * p.sx_c;
    for (int i = threadIdx.x; i < tile.in_h * tile.in_w; i += blockDim.x) {
      const int64_t iy = iy0 + i / tile.in_w, ix = ix0 + i % tile.in_w;
      const bool inside = iy >= 0 && iy < p.h && ix >= 0 && ix < p.w;
      x_s[i] = inside ? cuda::load_as<T>(src[iy * p.sx_h + ix * p.sx_w]) + bias : T(0);
    }
    __syncthreads();
    if (p.fa_separable) {
      for (int i = threadIdx.x; i < tile.in_h * tile.t_w; i += blockDim.x) {
        const int ly = i / tile.t_w, lx = i % tile.t_w;
        const T* row = x_s + ly * tile.in_w;
        rows_a[i] = line_sum(fa, p.fa_w, p.up, tx0 + lx - p.pad_ax0, p.w, [=](int64_t ix) { return row[ix - ix0]; });
      }
      __syncthreads();
    }
    // The codes this tile owns: its band of t rows and columns, the edge tiles' bands open-ended.
    const int64_t own_y0 = tile_y == 0 ? INT64_MIN : ty0, own_x0 = tile_x == 0 ? INT64_MIN : tx0;
    const int64_t own_y1 = tile_y + 1 == tile.tiles_y ? INT64_MAX : ty0 + int64_t(tile.out_h) * p.down;
    const int64_t own_x1 = tile_x + 1 == tile.tiles_x ? INT64_MAX : tx0 + int64_t(tile.out_w) * p.down;
    uint8_t* codes = p.codes ? p.codes + plane * p.t_h * p.t_w : nullptr;
    for (int i = threadIdx.x; i < tile.t_h * tile.t_w; i += blockDim.x) {
      const int ly = i / tile.t_w, lx = i % tile.t_w;
      const int64_t ty = ty0 + ly, tx = tx0 + lx;
      if (ty < 0 || ty >= p.t_h || tx < 0 || tx >= p.t_w) {
        t_s[i] = T(0);  // stage B reads t as 0 outside the image
        continue;
      }
      T v;
      if (p.fa_separable) {
        const int pitch = tile.t_w;
        v = line_sum(fa, p.fa_h, p.up, ty - p.pad_ay0, p.h,
                     [=](int64_t iy) { return rows_a[(iy - iy0) * pitch + lx]; });
      } else {
        const int pitch = tile.in_w;
        v = window_sum(fa, p.fa_h, p.fa_w, p.up, ty - p.pad_ay0, tx - p.pad_ax0, p.h, p.w,
                       [=](int64_t iy, int64_t ix) { return x_s[(iy - iy0) * pitch + (ix - ix0)]; });
      }
      if (kForward) {
        uint8_t code;
        v = activate(v, gain, slope, clamp, &code);
        if (codes && ty >= own_y0 && ty < own_y1 && tx >= own_x0 && tx < own_x1) codes[ty * p.t_w + tx] = code;
      } else {
        v = masked(v, codes[ty * p.t_w + tx], gain, slope);
      }
      t_s[i] = v;
    }
    __syncthreads();
    S* dst = out + n * p.so_n + c * p.so_c;
    if (p.fb_separable) {
      for (int i = threadIdx.x; i < tile.t_h * tile.out_w; i += blockDim.x) {
        const int ly = i / tile.out_w, lx = i % tile.out_w;
        const T* row = t_s + ly * tile.t_w;
        rows_b[i] = line_sum(fb, p.fb_w, 1, (ox0 + lx) * p.down - p.pad_bx0, p.t_w,
                             [=](int64_t tx) { return row[tx - tx0]; });
      }
      __syncthreads();
    }
    for (int i = threadIdx.x; i < tile.out_h * tile.out_w; i += blockDim.x) {
      const int ly = i / tile.out_w, lx = i % tile.out_w;
      const int64_t oy = oy0 + ly, ox = ox0 + lx;
      if (oy >= p.out_h || ox >= p.out_w) continue;
      T v;
      if (p.fb_separable) {
        const int pitch = tile.out_w;
        v = line_sum(fb, p.fb_h, 1, oy * p.down - p.pad_by0, p.t_h,
                     [=](int64_t ty) { return rows_b[(ty - ty0) * pitch + lx]; });
      } else {
        const int pitch = tile.t_w;
        v = window_sum(fb, p.fb_h, p.fb_w, 1, oy * p.down - p.pad_by0, ox * p.down - p.pad_bx0, p.t_h, p.t_w,
                       [=](int64_t ty, int64_t tx) { return t_s[(ty - ty0) * pitch + (tx - tx0)]; });
      }
      dst[oy * p.so_h + ox * p.so_w] = cuda::StoreAs<S>::from(v);
    }
    __syncthreads();  // the next tile reuses shared memory
  }
}

template <typename S, typename T, bool kForward>
void launch_typed(const Params& p, cudaStream_t stream, const char* name) {
  // The largest square-ish tile whose buffers fit the shared memory limit.
  Tile tile = make_tile(p, 16, 32);
  for (int size = 16; tile.floats(p) * sizeof(T) > kMaxSharedBytes; size /= 2) {
    if (size < 2) throw std::invalid_argument(std::string(name) + ": the filters are too long for one tile");
    tile = make_tile(p, size / 2, size);
  }
  const int64_t tiles = p.n * p.c * tile.tiles_y * tile.tiles_x;
  const int64_t blocks = std::min<int64_t>(tiles, int64_t(1) << 20);
  filtered_lrelu_kernel<S, T, kForward>
      <<<unsigned(blocks), kThreads, tile.floats(p) * sizeof(T), stream>>>(p, tile);
  cuda::check(cudaGetLastError(), name, "kernel launch failed");
}

template <bool kForward>
void launch(const Params& p, int device, std::uintptr_t stream_handle, const char* name) {
  if (p.n * p.c * p.out_h * p.out_w == 0) return;
  cuda::DeviceGuard guard(device, name);
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_handle);
  cuda::with_dtype(p.dtype, name, [&](auto s, auto t) { launch_typed<decltype(s), decltype(t), kForward>(p, stream, name); });
}

}  // namespace

void forward_cuda(const Params& p, int device, std::uintptr_t stream) {
  launch<true>(p, device, stream, "filtered_lrelu_forward_cuda");
}

void backward_cuda(const Params& p, int device, std::uintptr_t stream) {
  launch<false>(p, device, stream, "filtered_lrelu_backward_cuda");
}

}  // namespace filtered_lrelu
}  // namespace ngd
