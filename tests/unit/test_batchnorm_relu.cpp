// BatchNorm2d with its ReLU fused (the cnn's blocks): the same numbers as BatchNorm2d followed
// by a separate ReLU layer (each checked against PyTorch elsewhere), gradients against finite
// differences, the forward against PyTorch's BatchNorm2d output put through max(., 0), and
// the same state as a plain BatchNorm2d.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/nn/batchnorm2d.h"
#include "runtime/nn/relu.h"
#include "runtime/ops/cast.h"
#include "tests/support/gradcheck.h"
#include "tests/support/reference_data.h"

using namespace dp;
using test::check_fd;
using test::random_tensor;

namespace {

void set_affine(BatchNorm2d& bn, const std::vector<float>& w, const std::vector<float>& b) {
  const Shape s{static_cast<int64_t>(w.size())};
  bn.weight().value.copy_(Tensor::from_vector(s, w));
  bn.bias().value.copy_(Tensor::from_vector(s, b));
}

// Equal values, a NaN matching a NaN.
void expect_equal(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<float> g = got.to_vector(), w = want.to_vector();
  size_t bad = 0;
  for (size_t i = 0; i < g.size(); ++i)
    bad += !(g[i] == w[i] || (std::isnan(g[i]) && std::isnan(w[i])));
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << g.size() << " values differ";
}

// The fused layer and the separate bn -> relu it must equal, with the same affine parameters
// and running variance, in training or eval mode.
struct FusedAndSeparate {
  BatchNorm2d fused{"bn", 3, 1e-5f, 0.1f, /*relu=*/true};
  BatchNorm2d plain{"bn", 3};
  ReLU relu{"relu"};
  explicit FusedAndSeparate(bool training) {
    for (BatchNorm2d* bn : {&fused, &plain}) {
      set_affine(*bn, {1.5f, -0.7f, 0.3f}, {0.2f, -0.1f, 0.4f});
      bn->running_var().value.copy_(Tensor::from_vector({3}, std::vector<float>{0.5f, 2.0f, 1.0f}));
      bn->train(training);
    }
  }
};

Tensor as_bf16(const Tensor& x) {
  Tensor y = Tensor::zeros(x.shape(), DType::bf16);
  cast_into(x, y);
  return y;
}

Tensor as_f32(const Tensor& x) {
  if (x.dtype() == DType::f32) return x.clone();
  Tensor y = Tensor::zeros(x.shape());
  cast_into(x, y);
  return y;
}

// The fused layer against bn -> relu, bit for bit: the ReLU only selects, and the fused
// backward masks dy exactly where ReLU's backward would, before the same sums.
void check_matches_separate(bool training, DType dtype) {
  SCOPED_TRACE(std::string(training ? "training" : "eval") + (dtype == DType::bf16 ? " bf16" : ""));
  FusedAndSeparate layers(training);
  BatchNorm2d& fused = layers.fused;
  BatchNorm2d& plain = layers.plain;
  ReLU& relu = layers.relu;
  Tensor x = random_tensor({4, 3, 5, 7}, 90, -2.0f, 1.0f);
  Tensor g = random_tensor(x.shape(), 91);
  if (dtype == DType::bf16) {
    x = as_bf16(x);
    g = as_bf16(g);
  }
  const Tensor y = as_f32(fused.forward(x));
  expect_equal(y, as_f32(relu.forward(plain.forward(x))), "output");
  // Some outputs on each side of the kink, or the test would prove nothing.
  const std::vector<float> v = y.to_vector();
  const auto zeros = std::count(v.begin(), v.end(), 0.0f);
  EXPECT_GT(zeros, 10);
  EXPECT_LT(zeros, static_cast<long>(v.size()) - 10);
  expect_equal(as_f32(fused.backward(g)), as_f32(plain.backward(relu.backward(g))), "dx");
  expect_equal(fused.weight().grad, plain.weight().grad, "dweight");
  expect_equal(fused.bias().grad, plain.bias().grad, "dbias");
  expect_equal(fused.running_mean().value, plain.running_mean().value, "running_mean");
  expect_equal(fused.running_var().value, plain.running_var().value, "running_var");
}

// L = sum(y * g) is not differentiable where a pre-activation is 0: the check needs every
// pre-activation further from 0 than a perturbation moves it (eps 1e-2 times |weight| *
// invstd, ~0.02 here). Values center[c] +- [0.5, 2] per channel [B, C, H, W], the second half
// of the batch mirroring the first: the batch mean of channel c is center[c] exactly, and
// with a small bias no pre-activation comes near 0.
Tensor away_from_centre(const Shape& shape, const std::vector<float>& center, uint64_t seed) {
  const Tensor u = random_tensor(shape, seed, 0.5f, 2.0f), sign = random_tensor(shape, seed + 1);
  const int64_t half = shape[0] / 2, per_image = shape[1] * shape[2] * shape[3];
  const int64_t plane = shape[2] * shape[3];
  Tensor x = Tensor::zeros(shape);
  for (int64_t i = 0; i < half * per_image; ++i) {
    const float c = center[size_t(i / plane % shape[1])];
    const float d = sign.f32()[i] < 0 ? -u.f32()[i] : u.f32()[i];
    x.f32()[i] = c + d;
    x.f32()[i + half * per_image] = c - d;
  }
  return x;
}

void expect_away_from_kink(BatchNorm2d& plain, const Tensor& x) {
  const std::vector<float> pre = plain.forward(x).to_vector();
  float nearest = INFINITY;
  for (float p : pre) nearest = std::min(nearest, std::fabs(p));
  ASSERT_GT(nearest, 0.05f) << "a pre-activation is " << nearest << " from the kink";
}

}  // namespace

TEST(BatchNormReLU, MatchesBatchNormThenReLU) {
  for (bool training : {true, false})
    for (DType dtype : {DType::f32, DType::bf16}) check_matches_separate(training, dtype);
}

// torch.relu keeps a NaN, and its backward passes dy where the result is NaN (it zeroes dy
// only where the result is <= 0). NaNs in the vector body and the tail of channel 0's planes.
void check_nan_passes(bool training, DType dtype) {
  SCOPED_TRACE(std::string(training ? "training" : "eval") + (dtype == DType::bf16 ? " bf16" : ""));
  FusedAndSeparate layers(training);
  BatchNorm2d& fused = layers.fused;
  BatchNorm2d& plain = layers.plain;
  ReLU& relu = layers.relu;
  const int64_t plane = 5 * 7;
  Tensor x = random_tensor({4, 3, 5, 7}, 92, -2.0f, 1.0f);
  const std::vector<int64_t> nans = {2, 3 * plane + 9, 34, 3 * plane + 33};  // channel 0
  for (int64_t i : nans) x.f32()[i] = std::nanf("");
  auto nan_at = [&nans](int64_t i) { return std::find(nans.begin(), nans.end(), i) != nans.end(); };
  Tensor g = random_tensor(x.shape(), 93, 0.5f, 1.0f);
  if (dtype == DType::bf16) {
    x = as_bf16(x);
    g = as_bf16(g);
  }
  const Tensor y = as_f32(fused.forward(x));
  expect_equal(y, as_f32(relu.forward(plain.forward(x))), "output");
  const std::vector<float> yv = y.to_vector();
  // Training: the NaN is in channel 0's batch mean, so the whole channel is NaN.
  for (int64_t b = 0; b < 4; ++b)
    for (int64_t i = 0; i < plane; ++i) {
      const int64_t at = b * 3 * plane + i;
      if (training || nan_at(at)) {
        ASSERT_TRUE(std::isnan(yv[size_t(at)]))
            << "image " << b << " value " << i << ": relu(NaN) is NaN in PyTorch, got "
            << yv[size_t(at)];
      }
    }
  expect_equal(as_f32(fused.backward(g)), as_f32(plain.backward(relu.backward(g))), "dx");
  expect_equal(fused.weight().grad, plain.weight().grad, "dweight");
  expect_equal(fused.bias().grad, plain.bias().grad, "dbias");
  // dbias[0] = the sum of dy over channel 0: every dy passes the NaNs (all of the channel in
  // training), and dy > 0 everywhere, so a dropped one shows.
  const std::vector<float> gv = as_f32(g).to_vector();
  double want = 0;
  for (int64_t b = 0; b < 4; ++b)
    for (int64_t i = 0; i < plane; ++i) {
      const int64_t at = b * 3 * plane + i;
      if (training || nan_at(at) || yv[size_t(at)] > 0) want += gv[size_t(at)];
    }
  EXPECT_NEAR(fused.bias().grad.f32()[0], want, 1e-4 * want);
}

TEST(BatchNormReLU, KeepsNaNAsTorchReluDoes) {
  for (bool training : {true, false})
    for (DType dtype : {DType::f32, DType::bf16}) check_nan_passes(training, dtype);
}

TEST(BatchNormReLU, GradCheckTraining) {
  BatchNorm2d bn("bn", 3, 1e-5f, 0.1f, /*relu=*/true), plain("bn", 3);
  set_affine(bn, {1.5f, -0.7f, 0.3f}, {0.05f, -0.02f, 0.03f});
  set_affine(plain, {1.5f, -0.7f, 0.3f}, {0.05f, -0.02f, 0.03f});
  Tensor x = away_from_centre({2, 3, 3, 4}, {-0.5f, 0.2f, 1.0f}, 63);
  expect_away_from_kink(plain, x);
  const Tensor& y = bn.forward(x);
  Tensor g = random_tensor(y.shape(), 61);
  Tensor dx = bn.backward(g).clone();
  // The tolerances of BatchNorm2dTraining in test_cnn_gradcheck.cpp: away from the kink the
  // ReLU is linear and adds no error of its own.
  check_fd(bn, x, g, x, dx, 1e-2f, 5e-4, "bn+relu dx (training)");
  check_fd(bn, x, g, bn.weight().value, bn.weight().grad.clone(), 1e-2f, 1e-4, "bn+relu dweight");
  check_fd(bn, x, g, bn.bias().value, bn.bias().grad.clone(), 1e-2f, 1e-4, "bn+relu dbias");
}

TEST(BatchNormReLU, GradCheckEvaluation) {
  BatchNorm2d bn("bn", 2, 1e-5f, 0.1f, /*relu=*/true), plain("bn", 2);
  for (BatchNorm2d* b : {&bn, &plain}) {
    b->running_mean().value.copy_(Tensor::from_vector({2}, std::vector<float>{0.3f, -0.2f}));
    b->running_var().value.copy_(Tensor::from_vector({2}, std::vector<float>{0.5f, 2.0f}));
    set_affine(*b, {1.2f, 0.8f}, {0.1f, -0.05f});
    b->eval();
  }
  Tensor x = away_from_centre({2, 2, 3, 3}, {0.3f, -0.2f}, 74);
  expect_away_from_kink(plain, x);
  Tensor g = random_tensor({2, 2, 3, 3}, 71);
  bn.forward(x);
  Tensor dx = bn.backward(g).clone();
  check_fd(bn, x, g, x, dx, 1e-2f, 1e-4, "bn+relu dx (eval)");
  check_fd(bn, x, g, bn.weight().value, bn.weight().grad.clone(), 1e-2f, 1e-4,
           "bn+relu dweight (eval)");
  check_fd(bn, x, g, bn.bias().value, bn.bias().grad.clone(), 1e-2f, 1e-4, "bn+relu dbias (eval)");
}

TEST(BatchNormReLU, ForwardIsPyTorchsBatchNormThroughMaxZero) {
  nlohmann::json c = test::load_reference("layer_batchnorm2d_train.json");
  ASSERT_EQ(c.at("layer"), "batchnorm2d_train");
  Tensor w = test::reference_tensor(c["inputs"]["weight"]);
  BatchNorm2d bn("bn", size_t(w.numel()), c["attrs"]["eps"].get<float>(),
                 c["attrs"]["momentum"].get<float>(), /*relu=*/true);
  bn.weight().value.copy_(w);
  bn.bias().value.copy_(test::reference_tensor(c["inputs"]["bias"]));
  nlohmann::json want = c["output"];
  size_t clipped = 0;
  for (auto& v : want["data"])
    if (v.get<double>() <= 0) {
      v = 0.0;
      ++clipped;
    }
  ASSERT_GT(clipped, 0u);
  test::expect_reference(bn.forward(test::reference_tensor(c["inputs"]["x"])), want, "output");
}

TEST(BatchNormReLU, StateIsThatOfAPlainBatchNorm2d) {
  BatchNorm2d fused("bn1", 4, 1e-5f, 0.1f, /*relu=*/true), plain("bn1", 4);
  EXPECT_TRUE(fused.relu());
  EXPECT_FALSE(plain.relu());
  auto names = [](Module& m) {
    std::vector<std::string> n;
    for (Parameter* p : m.parameters()) n.push_back(p->name);
    for (Buffer* b : m.buffers()) n.push_back(b->name);
    return n;
  };
  EXPECT_EQ(names(fused), names(plain));
}
