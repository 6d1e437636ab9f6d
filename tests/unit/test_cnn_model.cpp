// The cnn model: registration and options, structure (parameter and buffer names, shapes),
// errors for data it cannot fit, and that it learns (and does not "learn" with lr = 0).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "models/cnn.h"
#include "models/registry.h"
#include "runtime/core/rng.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/optim/sgd.h"
#include "tests/support/gradcheck.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;
using test::random_tensor;

namespace {

BuiltModel build_cnn(const ModelOptionValues& given, const DataShape& data, uint64_t seed = 1) {
  const ModelEntry& e = find_model("cnn");
  return e.build(make_model_args(e, given, data, seed));
}

const DataShape kMnist{"images", {1, 28, 28}, 10};

std::vector<std::string> names(const std::vector<Parameter*>& ps) {
  std::vector<std::string> out;
  out.reserve(ps.size());
  for (const Parameter* p : ps) out.push_back(p->name);
  return out;
}

}  // namespace

TEST(CnnModel, RegisteredWithItsOptions) {
  const ModelEntry& e = find_model("cnn");
  EXPECT_EQ(e.data_kinds, (std::vector<std::string>{"images"}));
  EXPECT_EQ(e.loss, LossKind::classification);
  std::vector<std::string> opts;
  for (const ModelOption& o : e.options) opts.push_back(o.name + "=" + o.default_value);
  EXPECT_EQ(opts, (std::vector<std::string>{"channels=32,64", "fc-hidden=128", "kernel-size=3"}));
}

TEST(CnnModel, DefaultArchitectureOnMnistShapes) {
  BuiltModel m = build_cnn({}, kMnist);
  EXPECT_EQ(m.description, "cnn 1x28x28 conv 32-64 k3, fc 128, 10 classes");
  Module& model = *m.module;
  EXPECT_EQ(names(model.parameters()),
            (std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight",
                                      "bn2.weight", "bn2.bias", "fc1.weight", "fc1.bias",
                                      "fc2.weight", "fc2.bias"}));
  std::vector<std::string> buffers;
  for (Buffer* b : model.buffers()) buffers.push_back(b->name);
  EXPECT_EQ(buffers, (std::vector<std::string>{"bn1.running_mean", "bn1.running_var",
                                               "bn1.num_batches_tracked", "bn2.running_mean",
                                               "bn2.running_var", "bn2.num_batches_tracked"}));
  std::vector<Shape> shapes;
  size_t count = 0;
  for (Parameter* p : model.parameters()) {
    shapes.push_back(p->value.shape());
    count += p->value.numel();
  }
  // 28x28 -> pool -> 14x14 -> pool -> 7x7: fc1 sees 64 * 7 * 7 = 3136 features.
  EXPECT_EQ(shapes, (std::vector<Shape>{{32, 1, 3, 3},
                                        {32},
                                        {32},
                                        {64, 32, 3, 3},
                                        {64},
                                        {64},
                                        {128, 3136},
                                        {128},
                                        {10, 128},
                                        {10}}));
  EXPECT_EQ(count, 288u + 64 + 18432 + 128 + 3136 * 128 + 128 + 1290);

  // The loader's flattened images in, logits out; the input needs no gradient.
  const Tensor x = random_tensor({3, 784}, 1);
  const Tensor& logits = model.forward(x);
  EXPECT_EQ(logits.shape(), (Shape{3, 10}));
  EXPECT_FALSE(model.backward(random_tensor({3, 10}, 2)).defined());
  for (Parameter* p : model.parameters()) {
    double norm = 0;
    for (float v : p->grad.to_vector()) norm += std::fabs(v);
    EXPECT_GT(norm, 0.0) << p->name << " got no gradient";
  }
  // NCHW input works too, and gives the same logits.
  const std::vector<float> flat = model.forward(x).to_vector();
  EXPECT_EQ(model.forward(x.reshape({3, 1, 28, 28})).to_vector(), flat);
}

TEST(CnnModel, OptionsShapeTheNetwork) {
  BuiltModel m = build_cnn({{"channels", "8"}, {"fc-hidden", "none"}, {"kernel-size", "5"}},
                           {"images", {3, 16, 12}, 4});
  EXPECT_EQ(m.description, "cnn 3x16x12 conv 8 k5, fc none, 4 classes");
  EXPECT_EQ(names(m.module->parameters()),
            (std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "fc1.weight",
                                      "fc1.bias"}));
  // Padding 2 keeps 16x12 through the 5x5 convolution; the pool halves it to 8x6.
  EXPECT_EQ(m.module->parameters()[3]->value.shape(), (Shape{4, 8 * 8 * 6}));
  EXPECT_EQ(m.module->forward(random_tensor({2, 3 * 16 * 12}, 3)).shape(), (Shape{2, 4}));

  BuiltModel deep = build_cnn({{"channels", "4,4,4"}, {"fc-hidden", "16,8"}}, kMnist);
  EXPECT_EQ(deep.description, "cnn 1x28x28 conv 4-4-4 k3, fc 16-8, 10 classes");
  EXPECT_EQ(deep.module->forward(random_tensor({2, 784}, 4)).shape(), (Shape{2, 10}));
}

TEST(CnnModel, DataItCannotFitIsAClearError) {
  std::string msg = error_of([] { build_cnn({}, {"vectors", {784}, 10}); });
  EXPECT_NE(msg.find("--model cnn needs image data"), std::string::npos) << msg;
  EXPECT_NE(msg.find("vectors"), std::string::npos) << msg;
  // 3x3 images: block 1 pools them to 1x1, block 2 cannot pool 1x1.
  msg = error_of([] { build_cnn({}, {"images", {1, 3, 3}, 10}); });
  EXPECT_NE(msg.find("1x3x3 images are too small for 2 conv blocks: block 2 gets 1x1"),
            std::string::npos)
      << msg;
  msg = error_of([] { build_cnn({{"channels", "4,4,4,4,4"}}, kMnist); });
  EXPECT_NE(msg.find("block 5 gets 1x1"), std::string::npos) << msg;
  EXPECT_THROW(build_cnn({{"channels", "8,0"}}, kMnist), Error);
  EXPECT_THROW(build_cnn({{"kernel-size", "0"}}, kMnist), Error);
  // A kernel wider than 2 x its input - 1 has rows that only ever meet the zero padding: refused
  // by name before any weight is allocated (2001 took 49 GB; 99999999999999 overflowed a shape).
  // Block 2 of MNIST gets 14x14: 27 fits it, 29 does not (block 1's 28x28 takes up to 55).
  EXPECT_EQ(build_cnn({{"kernel-size", "27"}}, kMnist).description,
            "cnn 1x28x28 conv 32-64 k27, fc 128, 10 classes");
  msg = error_of([] { build_cnn({{"kernel-size", "29"}}, kMnist); });
  EXPECT_MENTIONS(msg,
                  "--kernel-size 29 is too large for conv block 2, whose input is 14x14 "
                  "(at most 27");
  for (const std::string k : {"56", "99999999999999"}) {
    msg = error_of([&] { build_cnn({{"kernel-size", k}}, kMnist); });
    EXPECT_MENTIONS(msg, "--kernel-size " + k +
                             " is too large for conv block 1, whose input is 28x28 (at most 55");
  }
  msg = error_of([] {
    build_cnn({{"channels", "8"}, {"kernel-size", "12"}}, {"images", {3, 6, 40}, 4});
  });
  EXPECT_MENTIONS(msg, "conv block 1, whose input is 6x40 (at most 11");
  EXPECT_THROW(build_cnn({{"hidden", "8"}}, kMnist), Error);  // an mlp option
  // A batch of the wrong image size names the model and the expected shape.
  BuiltModel m = build_cnn({}, kMnist);
  msg = error_of([&] { m.module->forward(Tensor::zeros({2, 785})); });
  EXPECT_NE(msg.find("cnn: expected images [batch, 784] or [batch, 1, 28, 28]"), std::string::npos)
      << msg;
}

namespace {

// 64 images 1x8x8 of 4 classes: class k lights up quadrant k, plus noise.
struct TinyImages {
  Tensor x, y;
};

TinyImages tiny_images() {
  const int64_t n = 64;
  Philox rng(2024, 1);
  std::vector<float> x(size_t(n) * 64);
  std::vector<int32_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int32_t k = int32_t(i % 4);
    y[size_t(i)] = k;
    for (int64_t r = 0; r < 8; ++r)
      for (int64_t c = 0; c < 8; ++c) {
        const bool lit = (r / 4) == k / 2 && (c / 4) == k % 2;
        x[size_t(i * 64 + r * 8 + c)] = (lit ? 1.0f : 0.0f) + 0.5f * (rng.uniform() - 0.5f);
      }
  }
  return {Tensor::from_vector({n, 64}, x), Tensor::from_vector({n}, y)};
}

// Mean loss of the first and the last 4 of `steps` SGD steps (momentum 0.9), cycling over the
// data in batches of 16; `correct` gets the evaluation-mode accuracy over all 64 at the end.
std::pair<double, double> train(float lr, int steps, double* accuracy) {
  CnnConfig cfg;
  cfg.channels = {4, 8};
  cfg.fc_hidden = {16};
  auto model = make_cnn({1, 8, 8}, 4, cfg, 9);
  SGD opt(model->parameters(), 0.9f);
  SoftmaxCrossEntropy loss;
  const TinyImages data = tiny_images();
  std::vector<double> curve;
  for (int s = 0; s < steps; ++s) {
    const size_t b = size_t(s % 4) * 16;
    const Tensor x = data.x.view(b * 64, {16, 64});
    const Tensor y = data.y.view(b, {16});
    opt.zero_grad();
    curve.push_back(loss.forward(model->forward(x), y));
    model->backward(loss.backward());
    opt.step(lr);
  }
  model->eval();
  loss.forward(model->forward(data.x), data.y);
  *accuracy = double(loss.correct()) / 64.0;
  double first = 0, last = 0;
  for (int i = 0; i < 4; ++i) {
    first += curve[size_t(i)] / 4;
    last += curve[size_t(steps) - 4 + size_t(i)] / 4;
  }
  return {first, last};
}

}  // namespace

TEST(CnnModel, SgdLearnsTinyImagesAndLrZeroDoesNot) {
  double acc = 0, acc0 = 0;
  const auto [first, last] = train(0.05f, 40, &acc);
  // ln 4 = 1.39 at chance; a real fit ends far below.
  EXPECT_LT(last, 0.3 * first) << "first " << first << ", last " << last;
  EXPECT_GE(acc, 0.9) << "evaluation with the running statistics";
  // The same run with lr = 0: the parameters never move, the batches repeat, and BatchNorm
  // normalises with each batch's own statistics: the loss is the same cycle throughout, so
  // the decrease above is learning, not an artefact of the measurement.
  const auto [first0, last0] = train(0.0f, 40, &acc0);
  EXPECT_NEAR(last0, first0, 1e-6 * first0);
}
