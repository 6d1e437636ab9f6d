#include "runtime/ops/cpu/layernorm.h"

#include <cmath>

#include "runtime/core/simd_clones.h"
#include "runtime/ops/cpu/float_io.h"

namespace dp {

namespace {

using cpu_io::lane_sum;

template <typename T>
DP_SIMD_INLINE void forward(size_t rows, size_t cols, float eps, const T* x,
                            const float* __restrict__ w, const float* __restrict__ b, T* y,
                            float* mean, float* rstd) {
  const float inv_n = 1.0f / static_cast<float>(cols);
  for (size_t r = 0; r < rows; ++r) {
    const T* __restrict__ xr = x + r * cols;
    T* __restrict__ yr = y + r * cols;
    // Two passes (mean, then squared deviations) as PyTorch: no cancellation for rows with
    // a large mean.
    const float m = lane_sum(cols, [&](size_t c) { return cpu_io::load(xr[c]); }) * inv_n;
    const float var = lane_sum(cols,
                               [&](size_t c) {
                                 const float d = cpu_io::load(xr[c]) - m;
                                 return d * d;
                               }) *
                      inv_n;
    const float s = 1.0f / std::sqrt(var + eps);
    for (size_t c = 0; c < cols; ++c)
      cpu_io::store(yr[c], (cpu_io::load(xr[c]) - m) * s * w[c] + b[c]);
    mean[r] = m;
    rstd[r] = s;
  }
}

template <typename T>
DP_SIMD_INLINE void backward(size_t rows, size_t cols, const T* x, const T* dy,
                             const float* __restrict__ w, const float* mean, const float* rstd,
                             T* dx, float* __restrict__ dw, float* __restrict__ db) {
  const float inv_n = 1.0f / static_cast<float>(cols);
  for (size_t r = 0; r < rows; ++r) {
    const T* __restrict__ xr = x + r * cols;
    const T* __restrict__ gr = dy + r * cols;
    T* __restrict__ dxr = dx + r * cols;
    const float m = mean[r], s = rstd[r];
    // With xhat = (x - mean) * rstd and g = dy * weight:
    //   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
    const float g_mean =
        lane_sum(cols, [&](size_t c) { return cpu_io::load(gr[c]) * w[c]; }) * inv_n;
    const float gx_mean =
        lane_sum(
            cols,
            [&](size_t c) { return cpu_io::load(gr[c]) * w[c] * (cpu_io::load(xr[c]) - m) * s; }) *
        inv_n;
    for (size_t c = 0; c < cols; ++c) {
      const float g = cpu_io::load(gr[c]);
      const float xhat = (cpu_io::load(xr[c]) - m) * s;
      cpu_io::store(dxr[c], s * (g * w[c] - g_mean - xhat * gx_mean));
      dw[c] += g * xhat;
      db[c] += g;
    }
  }
}

}  // namespace

DP_SIMD_CLONES void layernorm_forward(size_t rows, size_t cols, float eps, const float* x,
                                      const float* weight, const float* bias, float* y, float* mean,
                                      float* rstd) {
  forward(rows, cols, eps, x, weight, bias, y, mean, rstd);
}

DP_SIMD_CLONES void layernorm_forward(size_t rows, size_t cols, float eps, const bf16* x,
                                      const float* weight, const float* bias, bf16* y, float* mean,
                                      float* rstd) {
  forward(rows, cols, eps, x, weight, bias, y, mean, rstd);
}

DP_SIMD_CLONES void layernorm_backward(size_t rows, size_t cols, const float* x, const float* dy,
                                       const float* weight, const float* mean, const float* rstd,
                                       float* dx, float* dweight, float* dbias) {
  backward(rows, cols, x, dy, weight, mean, rstd, dx, dweight, dbias);
}

DP_SIMD_CLONES void layernorm_backward(size_t rows, size_t cols, const bf16* x, const bf16* dy,
                                       const float* weight, const float* mean, const float* rstd,
                                       bf16* dx, float* dweight, float* dbias) {
  backward(rows, cols, x, dy, weight, mean, rstd, dx, dweight, dbias);
}

}  // namespace dp
