// upfirdn2d on the CPU, row by row: for each output row, each live vertical tap adds
// a filtered input row into a float accumulator. Along x, the output columns that a
// tap kx reads real samples for form an arithmetic progression (the inserted zeros
// are skipped), computed once per call, so the inner loops have constant strides
// and vectorize in the common unit-stride case.
// Pure filtering (up = down = 1) with StyleGAN2's 4x4 filter takes a plane path instead:
// short rows pay that per-row setup 16 times over, so each plane is copied once into a
// zero-padded buffer and filtered with the taps unrolled and no bounds checks.
// Compiled once per CPU ISA (NGD_ISA); csrc/cpu/cpu_dispatch.cpp picks one at run time.
#include <algorithm>
#include <vector>

#include "nerfgan_distill/host_half.h"
#include "nerfgan_distill/upfirdn2d.h"

namespace ngd {
namespace upfirdn2d {
NGD_ISA_BEGIN
namespace {

// Planes up to this many padded elements (256 KB of floats) stay in cache while filtered.
constexpr int64_t kMaxPlaneBuffer = 64 * 1024;

bool takes_plane_path(const Params& p, int fh, int fw) {
  return p.up_x == 1 && p.up_y == 1 && p.down_x == 1 && p.down_y == 1 && p.fh == fh && p.fw == fw &&
         (p.out_h + fh - 1) * (p.out_w + fw - 1) <= kMaxPlaneBuffer;
}

// out = x (zero-padded) correlated with the FH x FW taps, one (n, c) plane per task.
template <int FH, int FW, typename S, typename T>
void run_planes(const Params& p) {
  const S* x = static_cast<const S*>(p.x);
  const T* f = static_cast<const T*>(p.f);
  S* out = static_cast<S*>(p.out);
  const int64_t ph = p.out_h + FH - 1, pw = p.out_w + FW - 1;  // the padded window the output reads
  const int64_t planes = p.n * p.c;
  T taps[FH * FW];
  std::copy(f, f + FH * FW, taps);
#pragma omp parallel num_threads(p.threads) if (planes * p.out_h * p.out_w >= 4096)
  {
    std::vector<T> buf(ph * pw);
    std::vector<T> acc(p.out_w);
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) {
      const int64_t n = plane / p.c, c = plane % p.c;
      const S* src = x + n * p.sx_n + c * p.sx_c;
      for (int64_t py = 0; py < ph; ++py) {
        const int64_t iy = py - p.pad_y0;
        T* dst = buf.data() + py * pw;
        for (int64_t px = 0; px < pw; ++px) {
          const int64_t ix = px - p.pad_x0;
          dst[px] = (iy >= 0 && iy < p.h && ix >= 0 && ix < p.w) ? load_as<T>(src[iy * p.sx_h + ix * p.sx_w]) : T(0);
        }
      }
      S* dst = out + n * p.so_n + c * p.so_c;
      for (int64_t oy = 0; oy < p.out_h; ++oy) {
        std::fill(acc.begin(), acc.end(), T(0));
        for (int ky = 0; ky < FH; ++ky) {
          const T* row = buf.data() + (oy + ky) * pw;
          for (int kx = 0; kx < FW; ++kx) {
            const T tap = taps[ky * FW + kx];
            const T* in = row + kx;
            for (int64_t ox = 0; ox < p.out_w; ++ox) acc[ox] += tap * in[ox];
          }
        }
        for (int64_t ox = 0; ox < p.out_w; ++ox) dst[oy * p.so_h + ox * p.so_w] = StoreAs<S>::from(acc[ox]);
      }
    }
  }
}

template <typename S, typename T>
void run(const Params& p) {
  if (takes_plane_path(p, 4, 4)) return run_planes<4, 4, S, T>(p);
  const S* x = static_cast<const S*>(p.x);
  const T* f = static_cast<const T*>(p.f);
  S* out = static_cast<S*>(p.out);
  std::vector<ColumnSpan> spans(p.fw);
  for (int kx = 0; kx < p.fw; ++kx) spans[kx] = column_span(p.up_x, p.down_x, p.pad_x0, p.w, p.out_w, kx);
  const int64_t rows = p.n * p.c * p.out_h;
#pragma omp parallel num_threads(p.threads) if (rows * p.out_w >= 4096)
  {
    std::vector<T> acc(p.out_w);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t oy = r % p.out_h, plane = r / p.out_h;
      const int64_t n = plane / p.c, c = plane % p.c;
      std::fill(acc.begin(), acc.end(), T(0));
      const int64_t uy0 = oy * p.down_y - p.pad_y0;
      for (int ky = first_live_tap(uy0, p.up_y); ky < p.fh; ky += p.up_y) {
        const int64_t iy = (uy0 + ky) / p.up_y;
        if (iy < 0 || iy >= p.h) continue;
        const S* row = x + n * p.sx_n + c * p.sx_c + iy * p.sx_h;
        for (int kx = 0; kx < p.fw; ++kx) {
          const ColumnSpan& s = spans[kx];
          const T tap = f[ky * p.fw + kx];
          T* a = acc.data() + s.ox0;
          const S* in = row + s.ix0 * p.sx_w;
          if (s.ox_step == 1 && s.ix_step == 1 && p.sx_w == 1) {
            for (int64_t j = 0; j < s.count; ++j) a[j] += tap * load_as<T>(in[j]);
          } else {
            const int64_t in_step = s.ix_step * p.sx_w;
            for (int64_t j = 0; j < s.count; ++j) a[j * s.ox_step] += tap * load_as<T>(in[j * in_step]);
          }
        }
      }
      S* dst = out + n * p.so_n + c * p.so_c + oy * p.so_h;
      for (int64_t ox = 0; ox < p.out_w; ++ox) dst[ox * p.so_w] = StoreAs<S>::from(acc[ox]);
    }
  }
}

}  // namespace

void forward_cpu_isa(const Params& p) {
  with_host_dtype(p.dtype, "upfirdn2d_cpu", [&](auto s, auto t) { run<decltype(s), decltype(t)>(p); });
}

NGD_ISA_END
}  // namespace upfirdn2d
}  // namespace ngd
