// The cross-entropy's vectorised row softmax against the scalar definition.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "runtime/ops/cpu/softmax.h"

namespace dp {
namespace {

TEST(SoftmaxRow, MatchesTheDefinition) {
  std::mt19937 gen(7);
  for (size_t n : {size_t{1}, size_t{3}, size_t{16}, size_t{17}, size_t{257}, size_t{50257}}) {
    SCOPED_TRACE(n);
    std::normal_distribution<float> d(0.0f, 4.0f);
    std::vector<float> x(n), p(n);
    for (float& v : x) v = d(gen);
    x[n / 2] += 200.0f;  // a wide range: the smallest exp(x - max) underflow
    const SoftmaxRow r = softmax_row(n, x.data(), p.data());
    size_t arg = 0;
    for (size_t j = 1; j < n; ++j)
      if (x[j] > x[arg]) arg = j;
    EXPECT_EQ(r.argmax, arg);
    EXPECT_EQ(r.max, x[arg]);
    double sum = 0, total = 0;
    for (size_t j = 0; j < n; ++j) sum += std::exp(double(x[j]) - x[arg]);
    EXPECT_NEAR(r.sum, sum, 1e-6 * sum);
    for (size_t j = 0; j < n; ++j) {
      const double want = std::exp(double(x[j]) - x[arg]) / sum;
      EXPECT_NEAR(p[j], want, 1e-6 * want + 1e-30) << j;
      total += p[j];
    }
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
}

TEST(SoftmaxRow, TheFirstOfEqualMaximaIsTheArgmax) {
  std::vector<float> x = {1, 5, 2, 5, 5}, p(5);
  EXPECT_EQ(softmax_row(x.size(), x.data(), p.data()).argmax, 1u);
}

// A diverged model's NaN or infinite logits must give a NaN loss (log(sum) - (x - max)), not
// a finite one from the clamped exp.
TEST(SoftmaxRow, NonFiniteLogitsGiveANonFiniteLoss) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (const std::vector<float>& row : std::vector<std::vector<float>>{
           {0.5f, nan, 1.0f}, {nan, 0.5f, 1.0f}, {0.5f, inf, 1.0f}, {-inf, 0.5f, 1.0f}}) {
    std::vector<float> p(row.size());
    const SoftmaxRow r = softmax_row(row.size(), row.data(), p.data());
    const double loss = std::log(r.sum) - (double(row[2]) - r.max);
    if (std::isinf(row[0]) && row[0] < 0) {
      EXPECT_TRUE(std::isfinite(loss)) << "exp(-inf) is 0: the rest is a finite softmax";
      EXPECT_EQ(p[0], 0.0f);
    } else {
      EXPECT_FALSE(std::isfinite(loss)) << row[0] << " " << row[1];
    }
  }
}

}  // namespace
}  // namespace dp
