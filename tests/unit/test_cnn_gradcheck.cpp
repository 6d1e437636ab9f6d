// Finite-difference gradient checks of the CNN layers (Conv2d, MaxPool2d, BatchNorm2d,
// Flatten): every input and parameter gradient against central differences of
// L = sum(layer(x) * g). The tolerances are argued in tests/support/gradcheck.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "runtime/core/rng.h"
#include "runtime/nn/batchnorm2d.h"
#include "runtime/nn/conv2d.h"
#include "runtime/nn/flatten.h"
#include "runtime/nn/maxpool2d.h"
#include "tests/support/gradcheck.h"

using namespace dp;
using test::check_fd;
using test::random_tensor;

namespace {

struct ConvCase {
  size_t in, out, kernel, stride, padding;
  bool bias;
  Shape x;
};

// A convolution is linear in x, in W and in b separately: central differences have no
// truncation error, so eps can be large (5e-2) and the only error is the float32 rounding
// of ~100 outputs over 2 * eps, ~1e-5: tol 1e-4.
void check_conv(const ConvCase& c, uint64_t seed) {
  Conv2d conv("conv", c.in, c.out, c.kernel, c.stride, c.padding, seed, c.bias);
  Tensor x = random_tensor(c.x, seed + 1);
  const Tensor& y = conv.forward(x);
  Tensor g = random_tensor(y.shape(), seed + 2);
  Tensor dx = conv.backward(g).clone();
  Tensor dw = conv.weight().grad.clone();
  check_fd(conv, x, g, x, dx, 5e-2f, 1e-4, "dx");
  check_fd(conv, x, g, conv.weight().value, dw, 5e-2f, 1e-4, "dW");
  if (c.bias) check_fd(conv, x, g, conv.bias().value, conv.bias().grad.clone(), 5e-2f, 1e-4, "db");
}

}  // namespace

TEST(CnnGradCheck, Conv2dStride1Padding1) {
  check_conv({3, 4, 3, 1, 1, true, {2, 3, 5, 4}}, 10);
}

TEST(CnnGradCheck, Conv2dStride2Padding1) {
  check_conv({2, 3, 3, 2, 1, true, {2, 2, 7, 6}}, 20);
}

TEST(CnnGradCheck, Conv2dStrideLargerThanKernelSkipsPixels) {
  // Stride 3 with a 2x2 kernel leaves input rows and columns unread: their dx must be 0,
  // which the finite differences confirm.
  check_conv({2, 2, 2, 3, 1, false, {1, 2, 7, 8}}, 30);
}

TEST(CnnGradCheck, Conv2dKernelWiderThanPaddedInputRowIsAnError) {
  Conv2d conv("conv7", 1, 1, 5, 1, 1, 0);
  EXPECT_THROW(conv.forward(Tensor::zeros({1, 1, 2, 9})), Error);
}

namespace {

// Inputs whose values are all distinct, at least 0.01 apart: a max-pooling window's winner
// cannot change under a 1e-3 perturbation, so the layer is linear there and the differences
// exact up to rounding.
Tensor distinct_values(const Shape& shape, uint64_t seed) {
  const size_t n = shape_numel(shape);
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Philox rng(seed, 7);
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 0.01f * (float(order[i]) - float(n) / 2);
  return Tensor::from_vector(shape, v);
}

void check_pool(size_t kernel, size_t stride, size_t padding, const Shape& shape, uint64_t seed) {
  MaxPool2d pool("pool", kernel, stride, padding);
  Tensor x = distinct_values(shape, seed);
  const Tensor& y = pool.forward(x);
  Tensor g = random_tensor(y.shape(), seed + 1);
  Tensor dx = pool.backward(g).clone();
  check_fd(pool, x, g, x, dx, 1e-3f, 1e-4, "maxpool dx");
}

}  // namespace

TEST(CnnGradCheck, MaxPool2dNonOverlapping) {
  check_pool(2, 2, 0, {2, 3, 6, 5}, 40);  // the odd last column is dropped (floor mode)
}

TEST(CnnGradCheck, MaxPool2dOverlappingWithPadding) {
  // 3x3 windows at stride 2 share rows and columns: a pixel can win several windows and
  // must collect every one's gradient.
  check_pool(3, 2, 1, {2, 2, 7, 6}, 50);
}

TEST(CnnGradCheck, BatchNorm2dTraining) {
  BatchNorm2d bn("bn", 3);
  // Non-trivial affine parameters, so that dx depends on them.
  bn.weight().value.copy_(Tensor::from_vector({3}, std::vector<float>{1.5f, -0.7f, 0.3f}));
  bn.bias().value.copy_(Tensor::from_vector({3}, std::vector<float>{0.2f, -0.1f, 0.4f}));
  Tensor x = random_tensor({3, 3, 3, 4}, 60, -2.0f, 1.0f);
  const Tensor& y = bn.forward(x);
  Tensor g = random_tensor(y.shape(), 61);
  Tensor dx = bn.backward(g).clone();
  // dx goes through the batch mean and variance: non-linear in x. With eps 1e-2 truncation
  // and the rounding of 108 outputs of size ~1 leave up to ~7e-5 (measured): tol 5e-4. A
  // missing statistics term is an O(1) error. (The linear cases below pass at a tenth of
  // their tolerance.)
  check_fd(bn, x, g, x, dx, 1e-2f, 5e-4, "bn dx (training)");
  // y is linear in weight and bias.
  check_fd(bn, x, g, bn.weight().value, bn.weight().grad.clone(), 1e-2f, 1e-4, "bn dweight");
  check_fd(bn, x, g, bn.bias().value, bn.bias().grad.clone(), 1e-2f, 1e-4, "bn dbias");
}

TEST(CnnGradCheck, BatchNorm2dEvaluationHoldsStatisticsFixed) {
  BatchNorm2d bn("bn", 2);
  bn.running_mean().value.copy_(Tensor::from_vector({2}, std::vector<float>{0.3f, -0.2f}));
  bn.running_var().value.copy_(Tensor::from_vector({2}, std::vector<float>{0.5f, 2.0f}));
  bn.weight().value.copy_(Tensor::from_vector({2}, std::vector<float>{1.2f, 0.8f}));
  bn.eval();
  Tensor x = random_tensor({2, 2, 3, 3}, 70);
  Tensor g = random_tensor({2, 2, 3, 3}, 71);
  bn.forward(x);
  Tensor dx = bn.backward(g).clone();
  check_fd(bn, x, g, x, dx, 1e-2f, 1e-4, "bn dx (eval)");
  check_fd(bn, x, g, bn.weight().value, bn.weight().grad.clone(), 1e-2f, 1e-4, "bn dweight (eval)");
}

TEST(CnnGradCheck, Flatten) {
  Flatten flat("flatten");
  Tensor x = random_tensor({2, 3, 2, 2}, 80);
  const Tensor& y = flat.forward(x);
  ASSERT_EQ(y.shape(), (Shape{2, 12}));
  Tensor g = random_tensor(y.shape(), 81);
  Tensor dx = flat.backward(g).clone();
  EXPECT_EQ(dx.shape(), x.shape());
  check_fd(flat, x, g, x, dx, 1e-2f, 1e-5, "flatten dx");
}
