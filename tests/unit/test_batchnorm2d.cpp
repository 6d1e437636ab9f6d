// BatchNorm2d's state: the running statistics after training forwards (PyTorch's update,
// computed here by hand), where eps enters the normalisation, evaluation with the running
// statistics (nothing written), and the buffers list.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "runtime/nn/batchnorm2d.h"
#include "runtime/nn/relu.h"
#include "runtime/nn/sequential.h"
#include "tests/support/gradcheck.h"

using namespace dp;
using test::random_tensor;

namespace {

struct ChannelStats {
  std::vector<double> mean, unbiased_var;
};

// Per-channel mean and unbiased variance of x [B, C, H, W], in double.
ChannelStats stats_of(const Tensor& x) {
  const int64_t b = x.dim(0), c = x.dim(1), plane = x.dim(2) * x.dim(3);
  const double n = double(b * plane);
  ChannelStats s{std::vector<double>(size_t(c)), std::vector<double>(size_t(c))};
  const std::vector<float> v = x.to_vector();
  for (int64_t ch = 0; ch < c; ++ch) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < b; ++i)
      for (int64_t p = 0; p < plane; ++p) sum += v[size_t((i * c + ch) * plane + p)];
    const double mu = sum / n;
    for (int64_t i = 0; i < b; ++i)
      for (int64_t p = 0; p < plane; ++p) {
        const double d = v[size_t((i * c + ch) * plane + p)] - mu;
        sq += d * d;
      }
    s.mean[size_t(ch)] = mu;
    s.unbiased_var[size_t(ch)] = sq / (n - 1);
  }
  return s;
}

float batches_tracked(BatchNorm2d& bn) {
  return bn.num_batches_tracked().value.f32()[0];
}

}  // namespace

TEST(BatchNorm2d, RunningStatisticsFollowPyTorchsUpdate) {
  const float momentum = 0.3f;
  BatchNorm2d bn("bn1", 3, 1e-5f, momentum);
  std::vector<double> rm(3, 0.0), rv(3, 1.0);  // PyTorch's initial running statistics
  for (uint64_t step = 0; step < 3; ++step) {
    // Offsets and scales per step, so that the statistics differ from step to step.
    Tensor x = random_tensor({4, 3, 5, 5}, 100 + step, -1.0f + float(step), 2.0f + 2 * float(step));
    bn.forward(x);
    const ChannelStats s = stats_of(x);
    for (size_t c = 0; c < 3; ++c) {
      rm[c] = (1 - momentum) * rm[c] + momentum * s.mean[c];
      rv[c] = (1 - momentum) * rv[c] + momentum * s.unbiased_var[c];
      EXPECT_NEAR(bn.running_mean().value.f32()[c], rm[c], 1e-6 * (1 + std::fabs(rm[c])))
          << "step " << step << " channel " << c;
      EXPECT_NEAR(bn.running_var().value.f32()[c], rv[c], 1e-6 * (1 + std::fabs(rv[c])))
          << "step " << step << " channel " << c;
    }
    EXPECT_EQ(batches_tracked(bn), float(step + 1));
  }
}

TEST(BatchNorm2d, TrainingNormalisesWithTheBiasedBatchVariance) {
  BatchNorm2d bn("bn", 2);
  Tensor x = random_tensor({3, 2, 2, 3}, 7, -3.0f, 5.0f);
  const std::vector<float> y = bn.forward(x).to_vector();
  const ChannelStats s = stats_of(x);
  const std::vector<float> xv = x.to_vector();
  const double n = 3 * 2 * 3;
  for (size_t i = 0; i < xv.size(); ++i) {
    const size_t c = (i / 6) % 2;
    const double var = s.unbiased_var[c] * (n - 1) / n;
    const double want = (xv[i] - s.mean[c]) / std::sqrt(var + 1e-5);
    EXPECT_NEAR(y[i], want, 1e-5 * (1 + std::fabs(want))) << i;
  }
}

// (x - mean) / sqrt(var + eps), not / (sqrt(var) + eps): the two differ by about
// eps / (2 var) relative, under the other tests' tolerances for a variance near 1, but by
// tens of percent for a variance comparable to eps (a near-constant channel, e.g. a dead
// feature map), which is what eps is there for.
TEST(BatchNorm2d, EpsIsAddedToTheVarianceUnderTheSquareRoot) {
  const double eps = 1e-5;
  BatchNorm2d bn("bn", 2, float(eps));
  // Channel 0: 0.3 +- 4e-3 (variance about 5e-6); channel 1: a variance near 1.
  Tensor x = random_tensor({4, 2, 3, 3}, 21, -1.0f, 1.0f);
  const int64_t plane = 9;
  for (int64_t b = 0; b < 4; ++b)
    for (int64_t i = 0; i < plane; ++i) {
      float& v = x.f32()[(b * 2) * plane + i];
      v = 0.3f + 4e-3f * v;
    }
  const std::vector<float> y = bn.forward(x).to_vector();
  const ChannelStats s = stats_of(x);
  const std::vector<float> xv = x.to_vector();
  const double n = 4 * 9;
  const double var0 = s.unbiased_var[0] * (n - 1) / n;
  ASSERT_LT(var0, 2 * eps);
  ASSERT_GT(var0, eps / 10);
  for (size_t i = 0; i < xv.size(); ++i) {
    const size_t c = (i / 9) % 2;
    const double var = s.unbiased_var[c] * (n - 1) / n;
    const double want = (xv[i] - s.mean[c]) / std::sqrt(var + eps);
    EXPECT_NEAR(y[i], want, 1e-4 * (1 + std::fabs(want))) << "training, value " << i;
  }

  // Evaluation: the running variance of channel 0 equal to eps.
  bn.running_mean().value.copy_(Tensor::from_vector({2}, std::vector<float>{0.3f, 0.0f}));
  bn.running_var().value.copy_(Tensor::from_vector({2}, std::vector<float>{float(eps), 1.0f}));
  bn.eval();
  const std::vector<float> ye = bn.forward(x).to_vector();
  const std::vector<float> rv = bn.running_var().value.to_vector();
  for (size_t i = 0; i < xv.size(); ++i) {
    const size_t c = (i / 9) % 2;
    const double want = (xv[i] - (c == 0 ? double(0.3f) : 0.0)) / std::sqrt(double(rv[c]) + eps);
    EXPECT_NEAR(ye[i], want, 1e-4 * (1 + std::fabs(want))) << "eval, value " << i;
  }
}

TEST(BatchNorm2d, EvaluationUsesRunningStatisticsAndWritesNothing) {
  BatchNorm2d bn("bn", 2, 1e-3f);
  bn.running_mean().value.copy_(Tensor::from_vector({2}, std::vector<float>{0.5f, -1.0f}));
  bn.running_var().value.copy_(Tensor::from_vector({2}, std::vector<float>{4.0f, 0.25f}));
  bn.weight().value.copy_(Tensor::from_vector({2}, std::vector<float>{2.0f, -1.0f}));
  bn.bias().value.copy_(Tensor::from_vector({2}, std::vector<float>{0.1f, 0.2f}));
  bn.eval();
  EXPECT_FALSE(bn.training());
  const std::vector<float> rm = bn.running_mean().value.to_vector();
  const std::vector<float> rv = bn.running_var().value.to_vector();
  Tensor x = random_tensor({2, 2, 3, 3}, 8, -2.0f, 2.0f);
  const std::vector<float> y = bn.forward(x).to_vector();
  const std::vector<float> xv = x.to_vector();
  const double w[2] = {2.0, -1.0}, b[2] = {0.1, 0.2};
  for (size_t i = 0; i < xv.size(); ++i) {
    const size_t c = (i / 9) % 2;
    const double want = (xv[i] - rm[c]) / std::sqrt(double(rv[c]) + 1e-3) * w[c] + b[c];
    EXPECT_NEAR(y[i], want, 1e-5 * (1 + std::fabs(want))) << i;
  }
  EXPECT_EQ(bn.running_mean().value.to_vector(), rm);
  EXPECT_EQ(bn.running_var().value.to_vector(), rv);
  EXPECT_EQ(batches_tracked(bn), 0.0f);
  // A single value per channel is fine in evaluation (no batch statistics).
  EXPECT_NO_THROW(bn.forward(random_tensor({1, 2, 1, 1}, 9)));
  // Back to training: batch statistics again, and the buffers move.
  bn.train();
  bn.forward(x);
  EXPECT_NE(bn.running_mean().value.to_vector(), rm);
  EXPECT_EQ(batches_tracked(bn), 1.0f);
}

TEST(BatchNorm2d, ParametersAndBuffersAreRegistered) {
  Sequential net("net");
  net.add(std::make_unique<BatchNorm2d>("bn1", 4));
  net.add(std::make_unique<ReLU>("relu1"));
  net.add(std::make_unique<BatchNorm2d>("bn2", 2));
  std::vector<std::string> params, buffers;
  for (Parameter* p : net.parameters()) params.push_back(p->name);
  std::vector<DType> dtypes;
  std::vector<Shape> shapes;
  for (Buffer* b : net.buffers()) {
    buffers.push_back(b->name);
    dtypes.push_back(b->value.dtype());
    shapes.push_back(b->value.shape());
  }
  EXPECT_EQ(params, (std::vector<std::string>{"bn1.weight", "bn1.bias", "bn2.weight", "bn2.bias"}));
  EXPECT_EQ(buffers, (std::vector<std::string>{"bn1.running_mean", "bn1.running_var",
                                               "bn1.num_batches_tracked", "bn2.running_mean",
                                               "bn2.running_var", "bn2.num_batches_tracked"}));
  EXPECT_EQ(dtypes, std::vector<DType>(6, DType::f32));  // as BufferSync and the dump need
  EXPECT_EQ(shapes[0], (Shape{4}));
  EXPECT_EQ(shapes[2], (Shape{}));  // a scalar, as PyTorch's
  // PyTorch's initial values.
  auto& bn1 = static_cast<BatchNorm2d&>(net.child(0));
  EXPECT_EQ(bn1.weight().value.to_vector(), std::vector<float>(4, 1.0f));
  EXPECT_EQ(bn1.bias().value.to_vector(), std::vector<float>(4, 0.0f));
  EXPECT_EQ(bn1.running_mean().value.to_vector(), std::vector<float>(4, 0.0f));
  EXPECT_EQ(bn1.running_var().value.to_vector(), std::vector<float>(4, 1.0f));
  // eval() on the container reaches every BatchNorm.
  net.eval();
  EXPECT_FALSE(bn1.training());
  EXPECT_FALSE(net.child(2).training());
}

TEST(BatchNorm2d, ErrorsNameTheLayer) {
  BatchNorm2d bn("bn3", 3);
  try {
    bn.forward(Tensor::zeros({1, 3, 1, 1}));
    FAIL() << "one value per channel accepted in training";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bn3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("more than 1 value per channel"), std::string::npos) << msg;
  }
  try {
    bn.forward(Tensor::zeros({2, 4, 3, 3}));
    FAIL() << "4 channels accepted by a 3-channel BatchNorm";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bn3: expected"), std::string::npos) << e.what();
  }
  EXPECT_THROW(bn.forward(Tensor::zeros({2, 3, 9})), Error);
  EXPECT_THROW(bn.backward(Tensor::zeros({2, 3, 3, 3})), Error);  // before any forward
  EXPECT_THROW(BatchNorm2d("bad", 0), Error);
  EXPECT_THROW(BatchNorm2d("bad", 2, 0.0f), Error);
  EXPECT_THROW(BatchNorm2d("bad", 2, 1e-5f, 1.5f), Error);
}
