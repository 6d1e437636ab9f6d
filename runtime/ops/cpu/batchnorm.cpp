#include "runtime/ops/cpu/batchnorm.h"

#include "runtime/ops/cpu/float_io.h"

namespace dp {

using cpu_io::load;
using cpu_io::store;

namespace {

// Sum of f(x[i], i-th element of the other arrays) over one plane, eight float32 lanes (so
// the loop vectorises) folded into double.
template <typename F>
double plane_sum(int64_t plane, F f) {
  float lane[8] = {};
  int64_t i = 0;
  for (; i + 8 <= plane; i += 8)
    for (int l = 0; l < 8; ++l) lane[l] += f(i + l);
  for (; i < plane; ++i) lane[0] += f(i);
  double s = 0;
  for (float v : lane) s += v;
  return s;
}

}  // namespace

template <typename T>
void batchnorm_batch_stats(int64_t batch, int64_t channels, int64_t plane, const T* x, float* mean,
                           float* var) {
  const double n = static_cast<double>(batch * plane);
  for (int64_t c = 0; c < channels; ++c) {
    double s = 0;
    for (int64_t b = 0; b < batch; ++b) {
      const T* p = x + (b * channels + c) * plane;
      s += plane_sum(plane, [p](int64_t i) { return load(p[i]); });
    }
    const double mu = s / n;
    // Two passes: the sum of squared deviations does not cancel the way E[x^2] - E[x]^2 does.
    const float muf = static_cast<float>(mu);
    double ss = 0;
    for (int64_t b = 0; b < batch; ++b) {
      const T* p = x + (b * channels + c) * plane;
      ss += plane_sum(plane, [p, muf](int64_t i) {
        const float d = load(p[i]) - muf;
        return d * d;
      });
    }
    mean[c] = muf;
    var[c] = static_cast<float>(ss / n);
  }
}

template <typename T>
void batchnorm_apply(int64_t batch, int64_t channels, int64_t plane, const T* x, const float* mean,
                     const float* invstd, const float* weight, const float* bias, T* y) {
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < channels; ++c) {
      // y = x * scale + shift: one multiply-add per element.
      const float scale = invstd[c] * weight[c];
      const float shift = bias[c] - mean[c] * scale;
      const T* p = x + (b * channels + c) * plane;
      T* q = y + (b * channels + c) * plane;
      for (int64_t i = 0; i < plane; ++i) q[i] = store<T>(load(p[i]) * scale + shift);
    }
  }
}

template <typename T>
void batchnorm_backward_sums(int64_t batch, int64_t channels, int64_t plane, const T* x,
                             const T* dy, const float* mean, const float* invstd, float* sum_dy,
                             float* sum_dy_xhat) {
  for (int64_t c = 0; c < channels; ++c) {
    double sd = 0, sdx = 0;
    const float mu = mean[c];
    for (int64_t b = 0; b < batch; ++b) {
      const T* p = x + (b * channels + c) * plane;
      const T* g = dy + (b * channels + c) * plane;
      sd += plane_sum(plane, [g](int64_t i) { return load(g[i]); });
      sdx += plane_sum(plane, [p, g, mu](int64_t i) { return load(g[i]) * (load(p[i]) - mu); });
    }
    sum_dy[c] = static_cast<float>(sd);
    sum_dy_xhat[c] = static_cast<float>(sdx * invstd[c]);
  }
}

template <typename T>
void batchnorm_backward_input(int64_t batch, int64_t channels, int64_t plane, const T* x,
                              const T* dy, const float* mean, const float* invstd,
                              const float* weight, const float* sum_dy, const float* sum_dy_xhat,
                              bool batch_stats, T* dx) {
  const float inv_n = 1.0f / static_cast<float>(batch * plane);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < channels; ++c) {
      const float k = weight[c] * invstd[c];
      // dx = k * dy + a * (x - mean) + e, with the statistics' terms a and e zero for fixed
      // statistics; x - mean first, as PyTorch does, so that a large mean does not cancel.
      const float a = batch_stats ? -k * invstd[c] * sum_dy_xhat[c] * inv_n : 0.0f;
      const float e = batch_stats ? -k * sum_dy[c] * inv_n : 0.0f;
      const float mu = mean[c];
      const T* p = x + (b * channels + c) * plane;
      const T* g = dy + (b * channels + c) * plane;
      T* q = dx + (b * channels + c) * plane;
      for (int64_t i = 0; i < plane; ++i)
        q[i] = store<T>(k * load(g[i]) + a * (load(p[i]) - mu) + e);
    }
  }
}

// T is a type: it cannot be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define DP_BATCHNORM_INSTANTIATE(T)                                                            \
  template void batchnorm_batch_stats<T>(int64_t, int64_t, int64_t, const T*, float*, float*); \
  template void batchnorm_apply<T>(int64_t, int64_t, int64_t, const T*, const float*,          \
                                   const float*, const float*, const float*, T*);              \
  template void batchnorm_backward_sums<T>(int64_t, int64_t, int64_t, const T*, const T*,      \
                                           const float*, const float*, float*, float*);        \
  template void batchnorm_backward_input<T>(int64_t, int64_t, int64_t, const T*, const T*,     \
                                            const float*, const float*, const float*,          \
                                            const float*, const float*, bool, T*);
// NOLINTEND(bugprone-macro-parentheses)
DP_BATCHNORM_INSTANTIATE(float)
DP_BATCHNORM_INSTANTIATE(bf16)
#undef DP_BATCHNORM_INSTANTIATE

}  // namespace dp
