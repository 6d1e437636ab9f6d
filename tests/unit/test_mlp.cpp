// The MLP's structure, initialisation, and that it learns.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "models/mlp.h"
#include "runtime/core/rng.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/init.h"
#include "runtime/nn/linear.h"
#include "runtime/optim/sgd.h"

using namespace dp;

TEST(Mlp, ShapesNamesAndParameterCount) {
  auto model = make_mlp(784, {256, 128}, 10, 0);
  ASSERT_EQ(model->size(), 5u);
  std::vector<std::string> children;
  for (size_t i = 0; i < model->size(); ++i) children.push_back(model->child(i).name());
  EXPECT_EQ(children, (std::vector<std::string>{"fc1", "relu1", "fc2", "relu2", "fc3"}));

  std::vector<std::string> names;
  std::vector<Shape> shapes;
  size_t count = 0;
  for (Parameter* p : model->parameters()) {
    names.push_back(p->name);
    shapes.push_back(p->value.shape());
    count += p->value.numel();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                                             "fc3.weight", "fc3.bias"}));
  EXPECT_EQ(shapes, (std::vector<Shape>{{256, 784}, {256}, {128, 256}, {128}, {10, 128}, {10}}));
  EXPECT_EQ(count, 235146u);

  const Tensor& y = model->forward(Tensor::zeros({3, 784}));
  EXPECT_EQ(y.shape(), (Shape{3, 10}));
  EXPECT_FALSE(model->needs_input_grad());
  EXPECT_FALSE(model->child(0).needs_input_grad());
}

TEST(Mlp, NoHiddenLayerIsLogisticRegression) {
  auto model = make_mlp(4, {}, 3, 0);
  ASSERT_EQ(model->size(), 1u);
  EXPECT_EQ(model->child(0).name(), "fc1");
}

TEST(Mlp, Validation) {
  EXPECT_THROW(make_mlp(0, {8}, 10, 0), Error);
  EXPECT_THROW(make_mlp(4, {8, 0}, 10, 0), Error);
  EXPECT_THROW(make_mlp(4, {8}, 0, 0), Error);
}

TEST(Init, DeterministicPerSeedAndWithinPyTorchBounds) {
  auto a = make_mlp(20, {16}, 5, 42);
  auto b = make_mlp(20, {16}, 5, 42);
  auto c = make_mlp(20, {16}, 5, 43);
  auto pa = a->parameters(), pb = b->parameters(), pc = c->parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i]->value.to_vector(), pb[i]->value.to_vector()) << pa[i]->name;
    EXPECT_NE(pa[i]->value.to_vector(), pc[i]->value.to_vector()) << pa[i]->name;
    const double bound = 1.0 / std::sqrt(double(i < 2 ? 20 : 16));
    double lo = 1, hi = -1;
    for (float v : pa[i]->value.to_vector()) {
      EXPECT_GE(v, -bound) << pa[i]->name;
      EXPECT_LT(v, bound) << pa[i]->name;
      lo = std::min(lo, double(v));
      hi = std::max(hi, double(v));
    }
    if (pa[i]->value.numel() >= 16) {  // spread over the interval, not a constant
      EXPECT_LT(lo, -0.3 * bound) << pa[i]->name;
      EXPECT_GT(hi, 0.3 * bound) << pa[i]->name;
    }
  }
  // Weight and bias of one layer, and two layers of one shape, draw different streams.
  auto d = make_mlp(8, {8, 8}, 8, 1);
  auto pd = d->parameters();
  EXPECT_NE(pd[0]->value.to_vector(), pd[2]->value.to_vector());
  EXPECT_NE(std::vector<float>(pd[0]->value.f32(), pd[0]->value.f32() + 8),
            pd[1]->value.to_vector());
}

TEST(Init, IndependentOfConstructionOrder) {
  auto model = make_mlp(12, {10, 6}, 4, 9);
  Linear alone("fc2", 10, 6, 9);  // built on its own, out of order
  EXPECT_EQ(alone.weight().value.to_vector(), model->parameters()[2]->value.to_vector());
  EXPECT_EQ(alone.bias().value.to_vector(), model->parameters()[3]->value.to_vector());
  EXPECT_EQ(stable_name_hash("fc1.weight"), stable_name_hash(std::string("fc1.") + "weight"));
  EXPECT_NE(stable_name_hash("fc1.weight"), stable_name_hash("fc1.bias"));
  // FNV-1a's published test vector: the hash must never change between builds.
  EXPECT_EQ(stable_name_hash("a"), 0xaf63dc4c8601ec8cull);
}

TEST(Mlp, LearnsASeparableProblem) {
  // Two Gaussian-ish blobs per class; a few SGD steps must cut the loss substantially.
  const int64_t batch = 64;
  const int classes = 3;
  Philox rng(5, 0);
  std::vector<float> xs(size_t(batch) * 10);
  std::vector<int32_t> ys(static_cast<size_t>(batch));
  for (int64_t r = 0; r < batch; ++r) {
    ys[size_t(r)] = int32_t(r % classes);
    for (int j = 0; j < 10; ++j)
      xs[size_t(r) * 10 + j] = 0.3f * rng.normal() + (j % classes == ys[size_t(r)] ? 1.5f : 0.0f);
  }
  Tensor x = Tensor::from_vector({batch, 10}, xs);
  Tensor y = Tensor::from_vector({batch}, ys);
  auto model = make_mlp(10, {16}, classes, 3);
  SGD opt(model->parameters(), 0.9f);
  SoftmaxCrossEntropy loss;
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    last = loss.forward(model->forward(x), y);
    if (step == 0) first = last;
    model->backward(loss.backward());
    opt.step(0.1f);
  }
  EXPECT_LT(last, 0.2f * first);
  EXPECT_EQ(loss.correct(), size_t(batch));
}
