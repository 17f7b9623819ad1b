// filtered_lrelu on the CPU, one (n, c) plane per task. The intermediate image t is made one
// row at a time and consumed at once, so per plane only two buffers of about t's size live in
// cache, never the [N, C, t_h, t_w] tensor a composition of upfirdn2d and bias_act writes.
// Separable filters run as a row pass and a column pass (2 * taps multiply-adds per sample
// instead of taps^2), tap-outer over column spans so the inner loops have constant strides;
// dense filters run through the shared window_sum.
// Compiled once per CPU ISA (NGD_ISA); csrc/cpu/cpu_dispatch.cpp picks one at run time.
#include <algorithm>
#include <vector>

#include "nerfgan_distill/filtered_lrelu.h"
#include "nerfgan_distill/host_half.h"

namespace ngd {
namespace filtered_lrelu {
NGD_ISA_BEGIN
namespace {

using upfirdn2d::column_span;
using upfirdn2d::ColumnSpan;

// dst[o] += f[k] * src[(o * down + k - pad0) / up] over every tap k and real sample, by spans.
template <typename T>
void add_row_pass(const std::vector<ColumnSpan>& spans, const T* f, const T* src, T* dst) {
  for (size_t k = 0; k < spans.size(); ++k) {
    const ColumnSpan& s = spans[k];
    const T tap = f[k];
    T* d = dst + s.ox0;
    const T* in = src + s.ix0;
    if (s.ox_step == 1 && s.ix_step == 1) {
      for (int64_t j = 0; j < s.count; ++j) d[j] += tap * in[j];
    } else {
      for (int64_t j = 0; j < s.count; ++j) d[j * s.ox_step] += tap * in[j * s.ix_step];
    }
  }
}

std::vector<ColumnSpan> row_spans(int taps, int64_t up, int64_t down, int64_t pad0, int64_t in_size,
                                  int64_t out_size) {
  std::vector<ColumnSpan> spans(taps);
  for (int k = 0; k < taps; ++k) spans[k] = column_span(up, down, pad0, in_size, out_size, k);
  return spans;
}

template <typename S, typename T, bool kForward>
void run(const Params& p) {
  const S* x = static_cast<const S*>(p.x);
  const S* b = static_cast<const S*>(p.b);
  const T* fa = static_cast<const T*>(p.fa);
  const T* fb = static_cast<const T*>(p.fb);
  S* out = static_cast<S*>(p.out);
  const T gain = T(p.gain), slope = T(p.slope), clamp = T(p.clamp);
  const bool sep_a = p.fa_separable != 0, sep_b = p.fb_separable != 0;
  // Row passes: stage A upsamples along x (input w -> t_w), stage B downsamples (t_w -> out_w).
  const auto spans_a = sep_a ? row_spans(p.fa_w, p.up, 1, p.pad_ax0, p.w, p.t_w) : std::vector<ColumnSpan>();
  const auto spans_b = sep_b ? row_spans(p.fb_w, 1, p.down, p.pad_bx0, p.t_w, p.out_w) : std::vector<ColumnSpan>();
  const int64_t planes = p.n * p.c;
  const int64_t work = planes * p.t_h * p.t_w;
#pragma omp parallel num_threads(p.threads) if (work >= 16384)
  {
    std::vector<T> plane_in(p.h * p.w);                  // x (+ b), dense
    std::vector<T> rows_a(sep_a ? p.h * p.t_w : 0);      // stage A's row pass
    std::vector<T> t_row(p.t_w);                         // one row of t, then of a
    std::vector<T> a_plane(sep_b ? 0 : p.t_h * p.t_w);  // a, for a dense stage B
    std::vector<T> rows_b(sep_b ? p.t_h * p.out_w : 0);  // stage B's row pass
    std::vector<T> acc(p.out_w);
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) {
      const int64_t n = plane / p.c, c = plane % p.c;
      const S* src = x + n * p.sx_n + c * p.sx_c;
      const T bias = (kForward && b) ? load_as<T>(b[c]) : T(0);
      for (int64_t iy = 0; iy < p.h; ++iy) {
        for (int64_t ix = 0; ix < p.w; ++ix) plane_in[iy * p.w + ix] = load_as<T>(src[iy * p.sx_h + ix * p.sx_w]) + bias;
      }
      if (sep_a) {
        std::fill(rows_a.begin(), rows_a.end(), T(0));
        for (int64_t iy = 0; iy < p.h; ++iy) add_row_pass(spans_a, fa, &plane_in[iy * p.w], &rows_a[iy * p.t_w]);
      }
      if (sep_b) std::fill(rows_b.begin(), rows_b.end(), T(0));
      uint8_t* codes = p.codes ? p.codes + plane * p.t_h * p.t_w : nullptr;
      for (int64_t ty = 0; ty < p.t_h; ++ty) {
        const int64_t uy0 = ty - p.pad_ay0;
        if (sep_a) {  // column pass: t_row = sum of the live taps' rows
          std::fill(t_row.begin(), t_row.end(), T(0));
          for (int ky = upfirdn2d::first_live_tap(uy0, p.up); ky < p.fa_h; ky += p.up) {
            const int64_t iy = (uy0 + ky) / p.up;
            if (iy < 0 || iy >= p.h) continue;
            const T tap = fa[ky];
            const T* row = &rows_a[iy * p.t_w];
            for (int64_t tx = 0; tx < p.t_w; ++tx) t_row[tx] += tap * row[tx];
          }
        } else {
          const auto load = [&](int64_t iy, int64_t ix) { return plane_in[iy * p.w + ix]; };
          for (int64_t tx = 0; tx < p.t_w; ++tx) {
            t_row[tx] = window_sum(fa, p.fa_h, p.fa_w, p.up, uy0, tx - p.pad_ax0, p.h, p.w, load);
          }
        }
        uint8_t* code_row = codes ? codes + ty * p.t_w : nullptr;
        if (kForward) {
          uint8_t code;
          for (int64_t tx = 0; tx < p.t_w; ++tx) {
            t_row[tx] = activate(t_row[tx], gain, slope, clamp, &code);
            if (code_row) code_row[tx] = code;
          }
        } else {
          for (int64_t tx = 0; tx < p.t_w; ++tx) t_row[tx] = masked(t_row[tx], code_row[tx], gain, slope);
        }
        if (sep_b) {
          add_row_pass(spans_b, fb, t_row.data(), &rows_b[ty * p.out_w]);
        } else {
          std::copy(t_row.begin(), t_row.end(), a_plane.begin() + ty * p.t_w);
        }
      }
      S* dst = out + n * p.so_n + c * p.so_c;
      for (int64_t oy = 0; oy < p.out_h; ++oy) {
        const int64_t ty0 = oy * p.down - p.pad_by0;
        if (sep_b) {
          std::fill(acc.begin(), acc.end(), T(0));
          for (int ky = 0; ky < p.fb_h; ++ky) {
            const int64_t ty = ty0 + ky;
            if (ty < 0 || ty >= p.t_h) continue;
            const T tap = fb[ky];
            const T* row = &rows_b[ty * p.out_w];
            for (int64_t ox = 0; ox < p.out_w; ++ox) acc[ox] += tap * row[ox];
          }
        } else {
          const auto load = [&](int64_t ty, int64_t tx) { return a_plane[ty * p.t_w + tx]; };
          for (int64_t ox = 0; ox < p.out_w; ++ox) {
            acc[ox] = window_sum(fb, p.fb_h, p.fb_w, 1, ty0, ox * p.down - p.pad_bx0, p.t_h, p.t_w, load);
          }
        }
        for (int64_t ox = 0; ox < p.out_w; ++ox) dst[oy * p.so_h + ox * p.so_w] = StoreAs<S>::from(acc[ox]);
      }
    }
  }
}

}  // namespace

void forward_cpu_isa(const Params& p) {
  with_host_dtype(p.dtype, "filtered_lrelu_cpu", [&](auto s, auto t) { run<decltype(s), decltype(t), true>(p); });
}

void backward_cpu_isa(const Params& p) {
  with_host_dtype(p.dtype, "filtered_lrelu_cpu", [&](auto s, auto t) { run<decltype(s), decltype(t), false>(p); });
}

NGD_ISA_END
}  // namespace filtered_lrelu
}  // namespace ngd
