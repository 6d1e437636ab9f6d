// The CPU im2col / col2im kernels against the straightforward loops they replace, element for
// element and bit for bit: the fast paths (stride 1 with a 3x3 or 5x5 kernel) must sum each
// pixel's terms in the same order, (ki, kj) ascending from +0.0, as the scatter below.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "runtime/core/bf16.h"
#include "runtime/core/dtype.h"
#include "runtime/core/rng.h"
#include "runtime/ops/cpu/conv.h"

using namespace dp;

namespace {

std::vector<float> random_floats(size_t n, uint64_t seed) {
  Philox rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = rng.normal();
  return v;
}

// dx[c, ih, iw] = the sum over (ki, kj, oh, ow), in that order, of the dcol entries that
// read pixel (ih, iw): the adjoint of im2col, one scatter, in float32.
std::vector<float> reference_col2im(const Window2d& g, const std::vector<float>& dcol) {
  const int64_t oh_n = g.out_h(), ow_n = g.out_w(), k = g.kernel;
  std::vector<float> dx(static_cast<size_t>(g.channels * g.plane()), 0.0f);
  for (int64_t c = 0; c < g.channels; ++c)
    for (int64_t ki = 0; ki < k; ++ki)
      for (int64_t kj = 0; kj < k; ++kj)
        for (int64_t oh = 0; oh < oh_n; ++oh)
          for (int64_t ow = 0; ow < ow_n; ++ow) {
            const int64_t ih = oh * g.stride - g.padding + ki, iw = ow * g.stride - g.padding + kj;
            if (ih < 0 || ih >= g.height || iw < 0 || iw >= g.width) continue;
            dx[size_t((c * g.height + ih) * g.width + iw)] +=
                dcol[size_t((((c * k + ki) * k + kj) * oh_n + oh) * ow_n + ow)];
          }
  return dx;
}

struct Geometry {
  int64_t channels, height, width, kernel, stride, padding;
};

const std::vector<Geometry> kGeometries = {
    {2, 14, 14, 3, 1, 1}, {3, 28, 28, 3, 1, 1}, {1, 7, 9, 3, 1, 0},   {2, 5, 6, 3, 1, 2},
    {2, 3, 2, 3, 1, 1},   {1, 1, 1, 3, 1, 1},   {2, 11, 13, 5, 1, 2}, {1, 6, 4, 5, 1, 3},
    {2, 9, 10, 3, 2, 1},  {1, 8, 8, 2, 2, 0},   {2, 12, 10, 4, 1, 1}, {1, 17, 19, 3, 1, 1}};

Window2d window(const Geometry& t) {
  return Window2d{1, t.channels, t.height, t.width, t.kernel, t.stride, t.padding};
}

}  // namespace

TEST(ConvCpuKernels, Col2imIsBitIdenticalToTheScatter) {
  for (const Geometry& t : kGeometries) {
    const Window2d g = window(t);
    ASSERT_TRUE(g.valid());
    const std::vector<float> dcol = random_floats(size_t(g.patch() * g.positions()), 7);
    const std::vector<float> want = reference_col2im(g, dcol);
    std::vector<float> got(want.size(), -1.0f);
    col2im(g, dcol.data(), got.data());
    for (size_t i = 0; i < want.size(); ++i)
      // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): bit identity, NaN and -0 too
      ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
          << "element " << i << ": " << got[i] << " vs " << want[i] << " for " << t.channels << "x"
          << t.height << "x" << t.width << " k" << t.kernel << " s" << t.stride << " p"
          << t.padding;
    // bfloat16 output: the same float32 sums, rounded once.
    std::vector<bf16> got16(want.size());
    col2im(g, dcol.data(), got16.data());
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ(got16[i].bits, float_to_bf16(want[i]).bits) << "bf16 element " << i;
  }
}

TEST(ConvCpuKernels, Im2colCopiesEveryWindowWithZeroPadding) {
  for (const Geometry& t : kGeometries) {
    const Window2d g = window(t);
    const std::vector<float> x = random_floats(size_t(g.channels * g.plane()), 3);
    std::vector<float> col(size_t(g.patch() * g.positions()), -1.0f);
    im2col(g, x.data(), col.data());
    const int64_t oh_n = g.out_h(), ow_n = g.out_w(), k = g.kernel;
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t ki = 0; ki < k; ++ki)
        for (int64_t kj = 0; kj < k; ++kj)
          for (int64_t oh = 0; oh < oh_n; ++oh)
            for (int64_t ow = 0; ow < ow_n; ++ow) {
              const int64_t ih = oh * g.stride - g.padding + ki,
                            iw = ow * g.stride - g.padding + kj;
              const bool inside = ih >= 0 && ih < g.height && iw >= 0 && iw < g.width;
              const float want = inside ? x[size_t((c * g.height + ih) * g.width + iw)] : 0.0f;
              ASSERT_EQ(col[size_t((((c * k + ki) * k + kj) * oh_n + oh) * ow_n + ow)], want)
                  << "c " << c << " ki " << ki << " kj " << kj << " oh " << oh << " ow " << ow;
            }
  }
}
