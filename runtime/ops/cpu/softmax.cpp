#include "runtime/ops/cpu/softmax.h"

#include <cmath>

#include "runtime/core/simd_clones.h"
#include "runtime/ops/cpu/float_io.h"

namespace dp {

namespace {

// The scalar row: std::exp, a double sum, strict comparisons (a NaN neither wins nor is
// skipped by the sum).
SoftmaxRow softmax_row_scalar(size_t n, const float* x, float* p) {
  SoftmaxRow r;
  for (size_t j = 1; j < n; ++j)
    if (x[j] > x[r.argmax]) r.argmax = j;
  r.max = x[r.argmax];
  for (size_t j = 0; j < n; ++j) {
    p[j] = std::exp(x[j] - r.max);
    r.sum += p[j];
  }
  const float inv = static_cast<float>(1.0 / r.sum);
  for (size_t j = 0; j < n; ++j) p[j] *= inv;
  return r;
}

}  // namespace

DP_SIMD_CLONES SoftmaxRow softmax_row(size_t n, const float* x, float* p) {
  // x * 0 is 0 for a finite x and NaN for a NaN or an infinity.
  if (cpu_io::lane_sum(n, [&](size_t j) { return x[j] * 0.0f; }) != 0.0f)
    return softmax_row_scalar(n, x, p);
  SoftmaxRow r;
  r.max = cpu_io::lane_max(n, x);
  while (x[r.argmax] != r.max) ++r.argmax;
  for (size_t j = 0; j < n; ++j) p[j] = cpu_io::exp_clamped(x[j] - r.max);
  const float sum = cpu_io::lane_sum(n, [&](size_t j) { return p[j]; });
  const float inv = 1.0f / sum;
  for (size_t j = 0; j < n; ++j) p[j] *= inv;
  r.sum = sum;
  return r;
}

}  // namespace dp
