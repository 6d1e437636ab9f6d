// The CPU kernels against naive double-precision loops on random, non-zero inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/rng.h"
#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/cpu/gemm.h"

using namespace dp;

namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

std::vector<float> random_vec(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Philox rng(seed, 7);
  std::vector<float> v(n);
  for (float& x : v) x = lo + (hi - lo) * rng.uniform();
  return v;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tol,
                  const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * std::max(1.0, std::fabs(want[i]))) << what << " at " << i;
}

// C = alpha op(A) op(B) + beta C in double, from the stored (pre-op) row-major layouts.
std::vector<double> naive_gemm(bool ta, bool tb, int m, int n, int k, double alpha,
                               const std::vector<float>& a, int lda, const std::vector<float>& b,
                               int ldb, double beta, const std::vector<float>& c, int ldc) {
  std::vector<double> out(c.begin(), c.end());
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) {
        double av = ta ? a[size_t(p) * lda + i] : a[size_t(i) * lda + p];
        double bv = tb ? b[size_t(j) * ldb + p] : b[size_t(p) * ldb + j];
        s += av * bv;
      }
      double old = beta == 0.0 ? 0.0 : beta * c[size_t(i) * ldc + j];
      out[size_t(i) * ldc + j] = alpha * s + old;
    }
  return out;
}

}  // namespace

class GemmTranspose : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(GemmTranspose, MatchesNaiveWithPaddedStridesAndAccumulation) {
  const auto [ta, tb] = GetParam();
  const int m = 7, n = 5, k = 11;
  // Leading dimensions wider than the logical rows: catches a stride mixed up with a size.
  const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 4;
  const int a_rows = ta ? k : m, b_rows = tb ? n : k;
  auto a = random_vec(size_t(a_rows) * lda, 1);
  auto b = random_vec(size_t(b_rows) * ldb, 2);
  auto c0 = random_vec(size_t(m) * ldc, 3);

  for (float beta : {0.0f, 1.0f, 0.5f}) {
    auto c = c0;
    if (beta == 0.0f)  // beta = 0 must ignore C's old contents, even NaN
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j)
          c[size_t(i) * ldc + j] = std::numeric_limits<float>::quiet_NaN();
    auto want = naive_gemm(ta, tb, m, n, k, 0.75, a, lda, b, ldb, beta, c, ldc);
    gemm(ta, tb, m, n, k, 0.75f, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
    for (int i = 0; i < m; ++i)
      for (int j = n; j < ldc; ++j)  // padding columns of C are not touched
        ASSERT_EQ(c[size_t(i) * ldc + j], c0[size_t(i) * ldc + j]);
    expect_close(c, want, 1e-5, beta == 0.0f ? "beta=0" : "beta!=0");
  }
}

INSTANTIATE_TEST_SUITE_P(AllFour, GemmTranspose,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()));

TEST(Gemm, BetaOneAccumulatesTwoProducts) {
  const int m = 4, n = 6, k = 3;
  auto a = random_vec(m * k, 10), b = random_vec(k * n, 11);
  std::vector<float> c(m * n, 0.0f);
  gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 1.0f, c.data(), n);
  gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 1.0f, c.data(), n);
  auto once = naive_gemm(false, false, m, n, k, 1.0, a, k, b, n, 0.0, c, n);
  for (double& v : once) v *= 2;
  expect_close(c, once, 1e-5, "accumulated");
}

TEST(Gemm, RejectsBadLeadingDimension) {
  std::vector<float> a(12), b(12), c(16);
  EXPECT_THROW(gemm(false, false, 4, 4, 3, 1.0f, a.data(), 2, b.data(), 4, 0.0f, c.data(), 4),
               Error);
  EXPECT_THROW(gemm(false, false, 4, 4, 3, 1.0f, a.data(), 3, b.data(), 4, 0.0f, c.data(), 3),
               Error);
  // An empty reduction (k = 0) scales C by beta, like BLAS.
  std::vector<float> c2 = {1, 2, 3, 4};
  gemm(false, false, 2, 2, 0, 1.0f, a.data(), 1, b.data(), 2, 0.5f, c2.data(), 2);
  EXPECT_EQ(c2, (std::vector<float>{0.5f, 1.0f, 1.5f, 2.0f}));
}

TEST(Elementwise, RowBiasAndColumnSums) {
  const size_t rows = 9, cols = 13;
  auto x = random_vec(rows * cols, 20), bias = random_vec(cols, 21);
  auto y = x;
  add_row_bias(rows, cols, bias.data(), y.data());
  std::vector<double> want(rows * cols);
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) want[r * cols + c] = double(x[r * cols + c]) + bias[c];
  expect_close(y, want, 1e-6, "add_row_bias");

  auto acc = random_vec(cols, 22);  // non-zero start: the sums must add, not overwrite
  std::vector<double> sums(acc.begin(), acc.end());
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) sums[c] += x[r * cols + c];
  col_sum_accumulate(rows, cols, x.data(), acc.data());
  expect_close(acc, sums, 1e-5, "col_sum_accumulate");
}

TEST(Elementwise, ReluForwardBackward) {
  const size_t n = 37;  // a vector body and a scalar tail on every SIMD width
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  auto x = random_vec(n, 30), dy = random_vec(n, 31);
  x[3] = 0.0f;  // the gradient at exactly 0 is 0 (PyTorch)
  x[4] = -0.0f;
  // torch.relu keeps a NaN (activations gone NaN must reach the loss), and its backward,
  // threshold_backward(dy, result, 0), zeroes dy only where the result is <= 0: a NaN
  // passes dy. One NaN in the vector body and one in the tail.
  x[5] = nan;
  x[6] = -nan;
  x[35] = nan;
  x[7] = inf;
  x[8] = -inf;
  std::vector<float> y(n), dx(n);
  relu_forward(n, x.data(), y.data());
  relu_backward(n, x.data(), dy.data(), dx.data());
  for (size_t i = 0; i < n; ++i) {
    const bool pass = !(x[i] <= 0.0f);
    EXPECT_EQ(bits_of(y[i]), bits_of(pass ? x[i] : 0.0f)) << i;
    EXPECT_EQ(bits_of(dx[i]), bits_of(pass ? dy[i] : 0.0f)) << i;
  }
  for (size_t i : {5, 6, 35}) {
    EXPECT_TRUE(std::isnan(y[i])) << i << ": relu(NaN) is NaN in PyTorch, got " << y[i];
    EXPECT_EQ(dx[i], dy[i]) << i;
  }
  EXPECT_EQ(bits_of(y[4]), 0u);  // -0 becomes +0
  EXPECT_EQ(dx[3], 0.0f);
  EXPECT_EQ(dx[4], 0.0f);
  EXPECT_EQ(y[7], inf);
  EXPECT_EQ(y[8], 0.0f);
  // In place is allowed for both.
  auto z = x;
  relu_forward(n, z.data(), z.data());
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(bits_of(z[i]), bits_of(y[i])) << i;
  relu_backward(n, x.data(), dy.data(), dy.data());
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(bits_of(dy[i]), bits_of(dx[i])) << i;
}

TEST(Elementwise, AxpyScaleSumSquares) {
  const size_t n = 101;  // not a multiple of the unroll or vector width
  auto x = random_vec(n, 40), y = random_vec(n, 41);
  std::vector<double> want(n);
  for (size_t i = 0; i < n; ++i) want[i] = double(y[i]) - 0.3 * double(x[i]);
  axpy(n, -0.3f, x.data(), y.data());
  expect_close(y, want, 1e-6, "axpy");

  auto s = x;
  scale(n, 2.5f, s.data());
  for (size_t i = 0; i < n; ++i) EXPECT_FLOAT_EQ(s[i], 2.5f * x[i]);

  double ss = 0;
  for (float v : x) ss += double(v) * v;
  EXPECT_NEAR(sum_squares(n, x.data()), ss, 1e-12 * ss);
  EXPECT_EQ(sum_squares(0, x.data()), 0.0);
}
