#include "runtime/ops/cpu/conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/ops/cpu/float_io.h"

namespace dp {

using cpu_io::load;
using cpu_io::store;

namespace {

// Division rounding down / up for a possibly negative numerator and a positive divisor.
int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
int64_t ceil_div(int64_t a, int64_t b) {
  return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

// The output columns [lo, hi) whose input column ow*stride - padding + kj lies inside the
// image: the rest read padding.
struct ColRange {
  int64_t lo, hi;
};
ColRange valid_cols(const Window2d& g, int64_t kj) {
  const int64_t ow = g.out_w();
  const int64_t lo = std::clamp<int64_t>(ceil_div(g.padding - kj, g.stride), 0, ow);
  const int64_t hi =
      std::clamp<int64_t>(floor_div(g.width - 1 + g.padding - kj, g.stride) + 1, lo, ow);
  return {lo, hi};
}

// memcpy of one short row (14 floats on the cnn's 14x14 maps) without the library call,
// whose cost was most of im2col's time: 16-byte blocks, the last one ending at the row's
// end (it may overlap the one before: it writes the same bytes again).
inline void copy_row(void* dst, const void* src, size_t bytes) {
  constexpr size_t kBlock = 16;
  if (bytes < kBlock) {
    std::memcpy(dst, src, bytes);
    return;
  }
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  for (size_t i = 0; i + kBlock < bytes; i += kBlock) std::memcpy(d + i, s + i, kBlock);
  std::memcpy(d + bytes - kBlock, s + bytes - kBlock, kBlock);
}

}  // namespace

template <typename T>
void im2col(const Window2d& g, const T* x, T* col) {
  const int64_t oh_n = g.out_h(), ow_n = g.out_w(), k = g.kernel, s = g.stride, pad = g.padding;
  if (s == 1) {
    // Stride 1: every column row is ow_n consecutive pixels of the zero-padded image, so
    // each channel is copied once into a padded plane and every row is then one copy, with
    // no zero fills for the padding (three library calls per row became one: the rows are
    // short, 14 elements on 14x14 images, and the calls cost more than the copies).
    const int64_t hp = g.height + 2 * pad, wp = g.width + 2 * pad;
    thread_local std::vector<T> padded;
    padded.assign(static_cast<size_t>(hp * wp), T{});
    for (int64_t c = 0; c < g.channels; ++c) {
      const T* img = x + c * g.plane();
      for (int64_t ih = 0; ih < g.height; ++ih)
        copy_row(padded.data() + (ih + pad) * wp + pad, img + ih * g.width,
                 static_cast<size_t>(g.width) * sizeof(T));
      for (int64_t ki = 0; ki < k; ++ki)
        for (int64_t kj = 0; kj < k; ++kj)
          for (int64_t oh = 0; oh < oh_n; ++oh, col += ow_n)
            copy_row(col, padded.data() + (oh + ki) * wp + kj,
                     static_cast<size_t>(ow_n) * sizeof(T));
    }
    return;
  }
  for (int64_t c = 0; c < g.channels; ++c) {
    const T* img = x + c * g.plane();
    for (int64_t ki = 0; ki < k; ++ki) {
      for (int64_t kj = 0; kj < k; ++kj) {
        const ColRange r = valid_cols(g, kj);
        for (int64_t oh = 0; oh < oh_n; ++oh, col += ow_n) {
          const int64_t ih = oh * s - pad + ki;
          if (ih < 0 || ih >= g.height) {
            std::fill(col, col + ow_n, T{});
            continue;
          }
          const T* in = img + ih * g.width;  // column ow reads in[ow * s - pad + kj]
          std::fill(col, col + r.lo, T{});
          if (s == 1) {
            std::memcpy(col + r.lo, in + (r.lo - pad + kj),
                        static_cast<size_t>(r.hi - r.lo) * sizeof(T));
          } else {
            for (int64_t ow = r.lo; ow < r.hi; ++ow) col[ow] = in[ow * s - pad + kj];
          }
          std::fill(col + r.hi, col + ow_n, T{});
        }
      }
    }
  }
}

namespace {

// col2im for stride 1 and a K x K kernel known at compile time: each input pixel's sum is
// gathered in a register, (ki, kj) in the same order as the general loop below, so the result
// is bit-identical to it. The general loop adds each of the K*K source rows into one scratch
// row at a different offset, and every such read-modify-write pass reads, misaligned, what
// the pass before just stored: the loads cannot be forwarded from the stores and stall (that
// was most of col2im's time on 14x14 images). Rows of kernel rows that no output row read
// point at a row of zeros: adding +0.0 to a sum that started at +0.0 changes nothing. The
// columns that some kj does not reach (the padding's width at each side) take the checked
// scalar loop.
template <int K, typename T>
void col2im_stride1(const Window2d& g, const float* dcol, T* dx) {
  const int64_t oh_n = g.out_h(), ow_n = g.out_w(), pad = g.padding, w = g.width;
  const int64_t positions = oh_n * ow_n;
  thread_local std::vector<float> zeros;
  zeros.assign(static_cast<size_t>(ow_n), 0.0f);
  // Column iw reads row kj at ow = iw + pad - kj: all K in range for iw in [lo, hi).
  const int64_t lo = std::min<int64_t>(std::max<int64_t>(K - 1 - pad, 0), w);
  const int64_t hi = std::max<int64_t>(std::min<int64_t>(ow_n - pad, w), lo);
  const float* rows[K][K];
  for (int64_t c = 0; c < g.channels; ++c) {
    for (int64_t ih = 0; ih < g.height; ++ih) {
      for (int ki = 0; ki < K; ++ki) {
        const int64_t oh = ih + pad - ki;
        for (int kj = 0; kj < K; ++kj)
          rows[ki][kj] = oh < 0 || oh >= oh_n
                             ? zeros.data()
                             : dcol + ((c * K + ki) * K + kj) * positions + oh * ow_n;
      }
      T* out = dx + (c * g.height + ih) * w;
      auto edge = [&](int64_t iw) {
        float s = 0.0f;
        for (int ki = 0; ki < K; ++ki)
          for (int kj = 0; kj < K; ++kj) {
            const int64_t ow = iw + pad - kj;
            if (ow >= 0 && ow < ow_n) s += rows[ki][kj][ow];
          }
        out[iw] = store<T>(s);
      };
      for (int64_t iw = 0; iw < lo; ++iw) edge(iw);
      for (int64_t iw = lo; iw < hi; ++iw) {
        float s = 0.0f;
        for (int ki = 0; ki < K; ++ki)
          for (int kj = 0; kj < K; ++kj) s += rows[ki][kj][iw + pad - kj];
        out[iw] = store<T>(s);
      }
      for (int64_t iw = hi; iw < w; ++iw) edge(iw);
    }
  }
}

}  // namespace

template <typename T>
void col2im(const Window2d& g, const float* dcol, T* dx) {
  if (g.stride == 1 && g.kernel == 3) return col2im_stride1<3>(g, dcol, dx);
  if (g.stride == 1 && g.kernel == 5) return col2im_stride1<5>(g, dcol, dx);
  const int64_t oh_n = g.out_h(), ow_n = g.out_w(), k = g.kernel, s = g.stride, pad = g.padding;
  const int64_t positions = oh_n * ow_n;
  // One input row at a time, gathered from every (ki, kj, oh) that read it into a float32
  // row, then stored once: no zeroing pass over dx, one rounding for bfloat16, and the
  // scratch row stays in L1.
  thread_local std::vector<float> row;
  thread_local std::vector<ColRange> ranges;
  row.resize(static_cast<size_t>(g.width));
  ranges.resize(static_cast<size_t>(k));
  for (int64_t kj = 0; kj < k; ++kj) ranges[static_cast<size_t>(kj)] = valid_cols(g, kj);
  float* acc = row.data();
  for (int64_t c = 0; c < g.channels; ++c) {
    for (int64_t ih = 0; ih < g.height; ++ih) {
      std::fill(acc, acc + g.width, 0.0f);
      for (int64_t ki = 0; ki < k; ++ki) {
        const int64_t t = ih + pad - ki;  // = oh * s for the output row that read ih
        if (t < 0 || t % s != 0 || t / s >= oh_n) continue;
        const int64_t oh = t / s;
        for (int64_t kj = 0; kj < k; ++kj) {
          const ColRange r = ranges[static_cast<size_t>(kj)];
          const float* src = dcol + ((c * k + ki) * k + kj) * positions + oh * ow_n;
          if (s == 1) {
            float* dst = acc + (r.lo - pad + kj);  // column ow's pixel, from r.lo on
            const float* from = src + r.lo;
            for (int64_t i = 0, n = r.hi - r.lo; i < n; ++i) dst[i] += from[i];
          } else {
            for (int64_t ow = r.lo; ow < r.hi; ++ow) acc[ow * s - pad + kj] += src[ow];
          }
        }
      }
      T* out = dx + (c * g.height + ih) * g.width;
      for (int64_t iw = 0; iw < g.width; ++iw) out[iw] = store<T>(acc[iw]);
    }
  }
}

template <typename T>
void fill_channels(int64_t batch, int64_t channels, int64_t plane, const float* value, T* y) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < channels; ++c, y += plane) std::fill(y, y + plane, store<T>(value[c]));
}

template <typename T>
void channel_sum_accumulate(int64_t batch, int64_t channels, int64_t plane, const T* x,
                            float* out) {
  for (int64_t c = 0; c < channels; ++c) {
    // A bias gradient sums batch x plane terms (50k for a batch of 64 28x28 images): eight
    // float32 lanes per image (which the compiler can vectorise), images summed in double.
    double s = 0;
    for (int64_t b = 0; b < batch; ++b) {
      const T* p = x + (b * channels + c) * plane;
      float lane[8] = {};
      int64_t i = 0;
      for (; i + 8 <= plane; i += 8)
        for (int l = 0; l < 8; ++l) lane[l] += load(p[i + l]);
      for (; i < plane; ++i) lane[0] += load(p[i]);
      for (float v : lane) s += v;
    }
    out[c] += static_cast<float>(s);
  }
}

template void im2col<float>(const Window2d&, const float*, float*);
template void im2col<bf16>(const Window2d&, const bf16*, bf16*);
template void col2im<float>(const Window2d&, const float*, float*);
template void col2im<bf16>(const Window2d&, const float*, bf16*);
template void fill_channels<float>(int64_t, int64_t, int64_t, const float*, float*);
template void fill_channels<bf16>(int64_t, int64_t, int64_t, const float*, bf16*);
template void channel_sum_accumulate<float>(int64_t, int64_t, int64_t, const float*, float*);
template void channel_sum_accumulate<bf16>(int64_t, int64_t, int64_t, const bf16*, float*);

}  // namespace dp
