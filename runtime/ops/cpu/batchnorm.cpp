#include "runtime/ops/cpu/batchnorm.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "runtime/ops/cpu/float_io.h"

namespace dp {

using cpu_io::load;
using cpu_io::store;

namespace {

// Four float32 lanes (GCC/Clang vector extension): written out, because GCC turns the
// two-accumulator lane loops of the one-pass sums into shuffles that run at half the speed
// of the two passes they replace.
typedef float f4 __attribute__((vector_size(16)));
typedef int32_t i4 __attribute__((vector_size(16)));

template <typename T>
inline f4 load4(const T* p) {
  return f4{load(p[0]), load(p[1]), load(p[2]), load(p[3])};
}

// Lane by lane for bfloat16; for float32 one store (GCC does not merge the lane stores).
template <typename T>
inline void store4(T* q, f4 v) {
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(q, &v, sizeof(v));
  } else {
    for (int l = 0; l < 4; ++l) q[l] = store<T>(v[l]);
  }
}

// The normalisation of channel c as y = x * scale + shift. The forward and the fused ReLU's
// backward both take it from here, and compute x * scale + shift with the same operations
// (four lanes at a time, then one at a time for the same tail), so that the backward finds
// exactly the forward's signs.
struct Affine {
  float scale, shift;
};
inline Affine affine_of(const float* mean, const float* invstd, const float* weight,
                        const float* bias, int64_t c) {
  const float scale = invstd[c] * weight[c];
  return {scale, bias[c] - mean[c] * scale};
}

// dy where the fused ReLU passed, else 0: an integer mask on the bits, which vectorises where
// a float select feeding arithmetic may not. It passes where pre <= 0 is false, NaN included,
// as the separate ReLU does (torch keeps a NaN).
inline f4 relu_pass(f4 pre, f4 dy) {
  const i4 pass = ~(pre <= 0.0f);  // all ones where pre > 0 or pre is NaN
  i4 gb;
  std::memcpy(&gb, &dy, sizeof(gb));
  gb &= pass;
  f4 g;
  std::memcpy(&g, &gb, sizeof(g));
  return g;
}
inline float relu_pass(float pre, float dy) {
  return pre <= 0.0f ? 0.0f : dy;
}

// sum f(i).a and sum f(i).b over one plane, f giving four lanes at a time (and one value at a
// time for the tail): eight float32 lanes per sum, added to s0 and s1 in double. One pass for
// both: the planes of a batch do not fit in the cache, and a second pass reads them again.
struct Sums4 {
  f4 a, b;
};
struct Sums1 {
  float a, b;
};

template <typename F4, typename F1>
void plane_sums(int64_t plane, F4 f4_at, F1 f1_at, double& s0, double& s1) {
  f4 a0 = {}, a1 = {}, b0 = {}, b1 = {};
  int64_t i = 0;
  for (; i + 8 <= plane; i += 8) {
    const Sums4 u = f4_at(i), v = f4_at(i + 4);
    a0 += u.a;
    a1 += v.a;
    b0 += u.b;
    b1 += v.b;
  }
  // The same split into four lanes and a tail as the other kernels (see Affine).
  for (; i + 4 <= plane; i += 4) {
    const Sums4 u = f4_at(i);
    a0 += u.a;
    b0 += u.b;
  }
  float ta = 0, tb = 0;
  for (; i < plane; ++i) {
    const Sums1 u = f1_at(i);
    ta += u.a;
    tb += u.b;
  }
  for (int l = 0; l < 4; ++l) {
    s0 += double(a0[l]) + double(a1[l]);
    s1 += double(b0[l]) + double(b1[l]);
  }
  s0 += ta;
  s1 += tb;
}

// Per-channel double accumulators, zeroed; reused between calls (no allocation per step).
std::vector<double>& sums_scratch(int64_t n) {
  thread_local std::vector<double> acc;
  acc.assign(static_cast<size_t>(n), 0.0);
  return acc;
}

template <bool Relu, typename T>
void backward_sums(int64_t batch, int64_t channels, int64_t plane, const T* x, const T* dy,
                   const float* mean, const float* invstd, const float* weight, const float* bias,
                   float* sum_dy, float* sum_dy_xhat) {
  // Image by image, every channel's plane in turn: one sequential sweep over the tensors (a
  // channel at a time jumps between planes of 196 values on 14x14 maps, too short for the
  // prefetcher). Each channel still adds its planes in batch order.
  std::vector<double>& acc = sums_scratch(2 * channels);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < channels; ++c) {
      const float mu = mean[c];
      const Affine af = Relu ? affine_of(mean, invstd, weight, bias, c) : Affine{};
      const int64_t at = (b * channels + c) * plane;
      const T* p = x + at;
      const T* g = dy + at;
      plane_sums(
          plane,
          [p, g, mu, af](int64_t i) {
            const f4 xv = load4(p + i);
            const f4 d = Relu ? relu_pass(xv * af.scale + af.shift, load4(g + i)) : load4(g + i);
            return Sums4{d, d * (xv - mu)};
          },
          [p, g, mu, af](int64_t i) {
            const float xv = load(p[i]);
            const float d = Relu ? relu_pass(xv * af.scale + af.shift, load(g[i])) : load(g[i]);
            return Sums1{d, d * (xv - mu)};
          },
          acc[size_t(2 * c)], acc[size_t(2 * c + 1)]);
    }
  }
  for (int64_t c = 0; c < channels; ++c) {
    sum_dy[c] = static_cast<float>(acc[size_t(2 * c)]);
    sum_dy_xhat[c] = static_cast<float>(acc[size_t(2 * c + 1)] * invstd[c]);
  }
}

template <bool Relu, typename T>
void backward_input(int64_t batch, int64_t channels, int64_t plane, const T* x, const T* dy,
                    const float* mean, const float* invstd, const float* weight, const float* bias,
                    const float* sum_dy, const float* sum_dy_xhat, bool batch_stats, T* dx) {
  const float inv_n = 1.0f / static_cast<float>(batch * plane);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < channels; ++c) {
      const float k = weight[c] * invstd[c];
      // dx = k * dy + a * (x - mean) + e, with the statistics' terms a and e zero for fixed
      // statistics; x - mean first, as PyTorch does, so that a large mean does not cancel.
      const float a = batch_stats ? -k * invstd[c] * sum_dy_xhat[c] * inv_n : 0.0f;
      const float e = batch_stats ? -k * sum_dy[c] * inv_n : 0.0f;
      const float mu = mean[c];
      const Affine af = Relu ? affine_of(mean, invstd, weight, bias, c) : Affine{};
      const int64_t at = (b * channels + c) * plane;
      const T* p = x + at;
      const T* g = dy + at;
      T* q = dx + at;
      int64_t i = 0;
      for (; i + 4 <= plane; i += 4) {
        const f4 xv = load4(p + i);
        const f4 d = Relu ? relu_pass(xv * af.scale + af.shift, load4(g + i)) : load4(g + i);
        store4(q + i, k * d + a * (xv - mu) + e);
      }
      for (; i < plane; ++i) {
        const float xv = load(p[i]);
        const float d = Relu ? relu_pass(xv * af.scale + af.shift, load(g[i])) : load(g[i]);
        q[i] = store<T>(k * d + a * (xv - mu) + e);
      }
    }
  }
}

}  // namespace

template <typename T>
void batchnorm_batch_stats(int64_t batch, int64_t channels, int64_t plane, const T* x, float* mean,
                           float* var) {
  const double n = static_cast<double>(batch * plane);
  // One pass: sums of d = x - shift and of d^2 per channel. The shift is one of the channel's
  // values, so it lies within the data's range and E[d^2] - E[d]^2 cancels no worse than the
  // variance is small next to the spread (the cancellation that a plain E[x^2] - E[x]^2
  // suffers when |mean| >> std does not happen). Image by image, as in backward_sums.
  std::vector<double>& acc = sums_scratch(2 * channels);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < channels; ++c) {
      const float shift = load(x[c * plane]);
      const T* p = x + (b * channels + c) * plane;
      plane_sums(
          plane,
          [p, shift](int64_t i) {
            const f4 d = load4(p + i) - shift;
            return Sums4{d, d * d};
          },
          [p, shift](int64_t i) {
            const float d = load(p[i]) - shift;
            return Sums1{d, d * d};
          },
          acc[size_t(2 * c)], acc[size_t(2 * c + 1)]);
    }
  }
  for (int64_t c = 0; c < channels; ++c) {
    const float shift = load(x[c * plane]);
    const double s = acc[size_t(2 * c)], ss = acc[size_t(2 * c + 1)];
    const double md = s / n;
    mean[c] = static_cast<float>(double(shift) + md);
    var[c] = static_cast<float>(std::max(0.0, ss / n - md * md));
  }
}

template <typename T>
void batchnorm_apply(int64_t batch, int64_t channels, int64_t plane, const T* x, const float* mean,
                     const float* invstd, const float* weight, const float* bias, bool relu, T* y) {
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < channels; ++c) {
      const Affine af = affine_of(mean, invstd, weight, bias, c);
      const T* p = x + (b * channels + c) * plane;
      T* q = y + (b * channels + c) * plane;
      int64_t i = 0;
      if (relu) {
        // v <= 0 ? 0 : v, the test the backward repeats (a NaN stays NaN).
        for (; i + 4 <= plane; i += 4) {
          const f4 v = load4(p + i) * af.scale + af.shift;
          store4(q + i, relu_pass(v, v));
        }
        for (; i < plane; ++i) {
          const float v = load(p[i]) * af.scale + af.shift;
          q[i] = store<T>(relu_pass(v, v));
        }
      } else {
        for (; i + 4 <= plane; i += 4) store4(q + i, load4(p + i) * af.scale + af.shift);
        for (; i < plane; ++i) q[i] = store<T>(load(p[i]) * af.scale + af.shift);
      }
    }
  }
}

template <typename T>
void batchnorm_backward_sums(int64_t batch, int64_t channels, int64_t plane, const T* x,
                             const T* dy, const float* mean, const float* invstd,
                             const float* relu_weight, const float* relu_bias, float* sum_dy,
                             float* sum_dy_xhat) {
  if (relu_bias != nullptr)
    backward_sums<true>(batch, channels, plane, x, dy, mean, invstd, relu_weight, relu_bias, sum_dy,
                        sum_dy_xhat);
  else
    backward_sums<false>(batch, channels, plane, x, dy, mean, invstd, relu_weight, relu_bias,
                         sum_dy, sum_dy_xhat);
}

template <typename T>
void batchnorm_backward_input(int64_t batch, int64_t channels, int64_t plane, const T* x,
                              const T* dy, const float* mean, const float* invstd,
                              const float* weight, const float* relu_bias, const float* sum_dy,
                              const float* sum_dy_xhat, bool batch_stats, T* dx) {
  if (relu_bias != nullptr)
    backward_input<true>(batch, channels, plane, x, dy, mean, invstd, weight, relu_bias, sum_dy,
                         sum_dy_xhat, batch_stats, dx);
  else
    backward_input<false>(batch, channels, plane, x, dy, mean, invstd, weight, relu_bias, sum_dy,
                          sum_dy_xhat, batch_stats, dx);
}

// T is a type: it cannot be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define DP_BATCHNORM_INSTANTIATE(T)                                                                \
  template void batchnorm_batch_stats<T>(int64_t, int64_t, int64_t, const T*, float*, float*);     \
  template void batchnorm_apply<T>(int64_t, int64_t, int64_t, const T*, const float*,              \
                                   const float*, const float*, const float*, bool, T*);            \
  template void batchnorm_backward_sums<T>(int64_t, int64_t, int64_t, const T*, const T*,          \
                                           const float*, const float*, const float*, const float*, \
                                           float*, float*);                                        \
  template void batchnorm_backward_input<T>(int64_t, int64_t, int64_t, const T*, const T*,         \
                                            const float*, const float*, const float*,              \
                                            const float*, const float*, const float*, bool, T*);
// NOLINTEND(bugprone-macro-parentheses)
DP_BATCHNORM_INSTANTIATE(float)
DP_BATCHNORM_INSTANTIATE(bf16)
#undef DP_BATCHNORM_INSTANTIATE

}  // namespace dp
