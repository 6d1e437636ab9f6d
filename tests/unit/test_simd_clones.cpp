// The DP_SIMD_CLONES kernels (runtime/core/simd_clones.h) run as AVX-512 or AVX2 code where
// the CPU has it; this test's own loops are compiled for the baseline. Bit-for-bit equal
// results say that every version does the same arithmetic (no fused multiply-adds, no
// reordered sums), so replicas on different CPUs compute the same values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "runtime/core/rng.h"
#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/cpu/float_io.h"
#include "runtime/ops/cpu/gelu.h"
#include "runtime/ops/cpu/layernorm.h"

namespace dp {
namespace {

std::vector<float> values(size_t n, uint64_t seed, float range) {
  Philox rng(seed, 7);
  std::vector<float> v(n);
  for (float& x : v) x = range * (2.0f * rng.uniform() - 1.0f);
  return v;
}

// Bit patterns, so that -0.0f and NaNs compare as what they are.
void expect_bits_equal(const std::vector<float>& got, const std::vector<float>& want,
                       const char* what) {
  ASSERT_EQ(got.size(), want.size());
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): bit identity, NaN and -0 too
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0 && bad++ == 0) first = i;
  EXPECT_EQ(bad, 0u) << what << ": first at " << first << " got " << got[first] << " want "
                     << want[first];
}

float sigmoid_2u(float x) {
  const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return 1.0f / (1.0f + cpu_io::exp_clamped(-2.0f * u));
}

// 1003: a tail after every vector width.
constexpr size_t kN = 1003;

TEST(SimdClones, GeluIsTheBaselinesArithmetic) {
  const std::vector<float> x = values(kN, 1, 9.0f), dy = values(kN, 2, 1.0f);
  std::vector<float> y(kN), dx(kN), want_y(kN), want_dx(kN);
  gelu_forward(kN, x.data(), y.data());
  gelu_backward(kN, x.data(), dy.data(), dx.data());
  for (size_t i = 0; i < kN; ++i) {
    const float v = x[i], s = sigmoid_2u(v);
    want_y[i] = v * s;
    const float du = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * v * v);
    want_dx[i] = dy[i] * (s + 2.0f * v * s * (1.0f - s) * du);
  }
  expect_bits_equal(y, want_y, "gelu forward");
  expect_bits_equal(dx, want_dx, "gelu backward");
}

TEST(SimdClones, LayerNormIsTheBaselinesArithmetic) {
  const size_t rows = 7, cols = 131;
  const std::vector<float> x = values(rows * cols, 3, 4.0f), w = values(cols, 4, 1.0f),
                           b = values(cols, 5, 1.0f);
  std::vector<float> y(rows * cols), mean(rows), rstd(rows), want(rows * cols);
  layernorm_forward(rows, cols, 1e-5f, x.data(), w.data(), b.data(), y.data(), mean.data(),
                    rstd.data());
  const float inv_n = 1.0f / float(cols);
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * cols;
    const float m = cpu_io::lane_sum(cols, [&](size_t c) { return xr[c]; }) * inv_n;
    const float var = cpu_io::lane_sum(cols,
                                       [&](size_t c) {
                                         const float d = xr[c] - m;
                                         return d * d;
                                       }) *
                      inv_n;
    const float s = 1.0f / std::sqrt(var + 1e-5f);
    for (size_t c = 0; c < cols; ++c) want[r * cols + c] = (xr[c] - m) * s * w[c] + b[c];
  }
  expect_bits_equal(y, want, "layernorm forward");
}

TEST(SimdClones, AdamWIsTheBaselinesArithmetic) {
  std::vector<float> p = values(kN, 6, 1.0f), m = values(kN, 7, 0.1f), v = values(kN, 8, 0.01f);
  for (float& e : v) e = std::fabs(e);
  const std::vector<float> g = values(kN, 9, 1.0f);
  std::vector<float> wp = p, wm = m, wv = v;
  const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
  const double bc1 = 1 - std::pow(0.9, 3), bc2 = 1 - std::pow(0.95, 3);
  adamw_update(kN, lr, b1, b2, eps, wd, bc1, bc2, p.data(), g.data(), m.data(), v.data());
  const float decay = 1.0f - lr * wd, step = static_cast<float>(lr / bc1),
              bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  for (size_t i = 0; i < kN; ++i) {
    wm[i] = wm[i] + (1.0f - b1) * (g[i] - wm[i]);
    wv[i] = b2 * wv[i] + (1.0f - b2) * g[i] * g[i];
    wp[i] = wp[i] * decay - step * (wm[i] / (std::sqrt(wv[i]) / bc2_sqrt + eps));
  }
  expect_bits_equal(p, wp, "adamw parameters");
  expect_bits_equal(m, wm, "adamw first moment");
  expect_bits_equal(v, wv, "adamw second moment");
}

}  // namespace
}  // namespace dp
