// Finite-difference gradient checks and the backward contract (accumulation, grad_ready
// order and count, buffer reuse).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "models/mlp.h"
#include "runtime/core/rng.h"
#include "runtime/core/tensor.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/linear.h"
#include "runtime/nn/relu.h"
#include "runtime/nn/sequential.h"
#include "tests/support/gradcheck.h"

using namespace dp;

using test::check_fd;
using test::random_labels;
using test::random_tensor;

TEST(GradCheck, LinearInputWeightBias) {
  Linear fc("fc", 5, 4, 123);
  Tensor x = random_tensor({3, 5}, 1);
  Tensor g = random_tensor({3, 4}, 2);
  fc.forward(x);
  Tensor dx = fc.backward(g).clone();
  Tensor dw = fc.weight().grad.clone();
  Tensor db = fc.bias().grad.clone();
  // Linear is linear in each variable, so a large eps has no truncation error and keeps
  // float rounding of the loss small relative to the step.
  check_fd(fc, x, g, x, dx, 1e-2f, 1e-4, "dx");
  check_fd(fc, x, g, fc.weight().value, dw, 1e-2f, 1e-4, "dW");
  check_fd(fc, x, g, fc.bias().value, db, 1e-2f, 1e-4, "db");
}

TEST(GradCheck, Relu) {
  ReLU relu("relu");
  Tensor x = random_tensor({4, 7}, 3);
  // Keep every input away from the kink so that x +- eps stays on one side.
  for (size_t i = 0; i < x.numel(); ++i)
    if (std::fabs(x.f32()[i]) < 0.1f) x.f32()[i] = x.f32()[i] < 0 ? -0.1f : 0.1f;
  Tensor g = random_tensor({4, 7}, 4);
  relu.forward(x);
  Tensor dx = relu.backward(g).clone();
  check_fd(relu, x, g, x, dx, 1e-2f, 1e-4, "relu dx");
}

namespace {

// Mean softmax cross-entropy in double: an independent reference for the float layer.
double ref_xent(const std::vector<double>& logits, const std::vector<int32_t>& labels,
                size_t classes) {
  const size_t batch = labels.size();
  double total = 0;
  for (size_t r = 0; r < batch; ++r) {
    const double* x = &logits[r * classes];
    double mx = x[0];
    for (size_t j = 1; j < classes; ++j) mx = std::max(mx, x[j]);
    double s = 0;
    for (size_t j = 0; j < classes; ++j) s += std::exp(x[j] - mx);
    total += std::log(s) + mx - x[labels[r]];
  }
  return total / double(batch);
}

}  // namespace

TEST(GradCheck, SoftmaxCrossEntropy) {
  const int64_t batch = 5;
  const size_t classes = 6;
  Tensor logits = random_tensor({batch, int64_t(classes)}, 5, -3.0f, 3.0f);
  Tensor labels = random_labels(batch, int(classes), 6);
  SoftmaxCrossEntropy loss;
  const float l = loss.forward(logits, labels);

  std::vector<double> z(logits.f32(), logits.f32() + logits.numel());
  std::vector<int32_t> y(labels.data<int32_t>(), labels.data<int32_t>() + batch);
  EXPECT_NEAR(l, ref_xent(z, y, classes), 1e-6);

  const float scale = 0.7f;
  const Tensor& grad = loss.backward(scale);
  const double eps = 1e-5;
  for (size_t i = 0; i < z.size(); ++i) {
    const double saved = z[i];
    z[i] = saved + eps;
    const double up = ref_xent(z, y, classes);
    z[i] = saved - eps;
    const double down = ref_xent(z, y, classes);
    z[i] = saved;
    EXPECT_NEAR(grad.f32()[i], scale * (up - down) / (2 * eps), 1e-6) << i;
  }

  // Large logits: the max-shift keeps everything finite.
  Tensor big = Tensor::from_vector({1, 3}, std::vector<float>{1000.0f, 0.0f, -1000.0f});
  const float lb = loss.forward(big, Tensor::from_vector({1}, std::vector<int32_t>{1}));
  EXPECT_NEAR(lb, 1000.0f, 1e-3);
  for (float v : loss.backward().to_vector()) EXPECT_TRUE(std::isfinite(v));
}

TEST(SoftmaxCrossEntropy, CorrectCountAndLabelErrors) {
  Tensor logits = Tensor::from_vector({3, 3}, std::vector<float>{0, 5, 1, 2, 0, 1, 0, 0, 9});
  SoftmaxCrossEntropy loss;
  loss.forward(logits, Tensor::from_vector({3}, std::vector<int32_t>{1, 2, 2}));
  EXPECT_EQ(loss.correct(), 2u);
  try {
    loss.forward(logits, Tensor::from_vector({3}, std::vector<int32_t>{1, 7, 2}));
    FAIL() << "label 7 of 3 classes accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("label 7"), std::string::npos) << msg;
    EXPECT_NE(msg.find("3 classes"), std::string::npos) << msg;
  }
  // One past the last class: the boundary of the check.
  try {
    loss.forward(logits, Tensor::from_vector({3}, std::vector<int32_t>{0, 3, 2}));
    FAIL() << "label 3 of 3 classes accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("label 3 at batch index 1 is out of range for 3 classes (expected 0..2)"),
              std::string::npos)
        << msg;
  }
  EXPECT_THROW(loss.forward(logits, Tensor::from_vector({3}, std::vector<int32_t>{-1, 0, 0})),
               Error);
  EXPECT_THROW(loss.forward(logits, Tensor::from_vector({2}, std::vector<int32_t>{0, 0})), Error);
  EXPECT_THROW(loss.forward(logits, Tensor::from_vector({3}, std::vector<float>{0, 0, 0})), Error);
  SoftmaxCrossEntropy fresh;
  EXPECT_THROW(fresh.backward(), Error);
}

namespace {

struct RefMlp {
  std::vector<std::vector<double>> w, b;  // per Linear, PyTorch layout
  std::vector<size_t> in, out;
};

// Forward of fc -> relu -> ... -> fc in double, then mean cross-entropy.
double ref_mlp_loss(const RefMlp& net, const std::vector<double>& x, size_t batch,
                    const std::vector<int32_t>& labels) {
  std::vector<double> h = x;
  for (size_t l = 0; l < net.w.size(); ++l) {
    std::vector<double> next(batch * net.out[l]);
    for (size_t r = 0; r < batch; ++r)
      for (size_t o = 0; o < net.out[l]; ++o) {
        double s = net.b[l][o];
        for (size_t i = 0; i < net.in[l]; ++i)
          s += h[r * net.in[l] + i] * net.w[l][o * net.in[l] + i];
        if (l + 1 < net.w.size()) s = std::max(s, 0.0);
        next[r * net.out[l] + o] = s;
      }
    h.swap(next);
  }
  return ref_xent(h, labels, net.out.back());
}

}  // namespace

TEST(GradCheck, WholeMlpAgainstDoubleReference) {
  const size_t batch = 4;
  auto model = make_mlp(6, {5, 4}, 3, 77);
  Tensor x = random_tensor({int64_t(batch), 6}, 8);
  Tensor labels = random_labels(int64_t(batch), 3, 9);
  SoftmaxCrossEntropy loss;
  const float l = loss.forward(model->forward(x), labels);
  model->backward(loss.backward());

  RefMlp net;
  std::vector<Parameter*> params = model->parameters();
  ASSERT_EQ(params.size(), 6u);
  for (size_t i = 0; i < params.size(); i += 2) {
    net.w.emplace_back(params[i]->value.f32(), params[i]->value.f32() + params[i]->value.numel());
    net.b.emplace_back(params[i + 1]->value.f32(),
                       params[i + 1]->value.f32() + params[i + 1]->value.numel());
    net.in.push_back(size_t(params[i]->value.dim(1)));
    net.out.push_back(size_t(params[i]->value.dim(0)));
  }
  std::vector<double> xd(x.f32(), x.f32() + x.numel());
  std::vector<int32_t> y(labels.data<int32_t>(), labels.data<int32_t>() + batch);
  EXPECT_NEAR(l, ref_mlp_loss(net, xd, batch, y), 1e-5);

  const double eps = 1e-6;
  for (size_t p = 0; p < params.size(); ++p) {
    std::vector<double>& v = (p % 2 == 0) ? net.w[p / 2] : net.b[p / 2];
    for (size_t i = 0; i < v.size(); ++i) {
      const double saved = v[i];
      v[i] = saved + eps;
      const double up = ref_mlp_loss(net, xd, batch, y);
      v[i] = saved - eps;
      const double down = ref_mlp_loss(net, xd, batch, y);
      v[i] = saved;
      EXPECT_NEAR(params[p]->grad.f32()[i], (up - down) / (2 * eps), 2e-5)
          << params[p]->name << "[" << i << "]";
    }
  }
}

TEST(Backward, AccumulatesIntoGrad) {
  Linear fc("fc", 4, 3, 5);
  Tensor x = random_tensor({2, 4}, 10);
  Tensor g = random_tensor({2, 3}, 11);
  fc.forward(x);
  fc.backward(g);
  Tensor w1 = fc.weight().grad.clone(), b1 = fc.bias().grad.clone();
  fc.backward(g);
  for (size_t i = 0; i < w1.numel(); ++i)
    EXPECT_FLOAT_EQ(fc.weight().grad.f32()[i], 2 * w1.f32()[i]);
  for (size_t i = 0; i < b1.numel(); ++i) EXPECT_FLOAT_EQ(fc.bias().grad.f32()[i], 2 * b1.f32()[i]);
}

TEST(Backward, WritesThroughARepointedGradView) {
  // The Reducer makes grad a view into a bucket; the layer must write there.
  Linear fc("fc", 3, 2, 5);
  Tensor bucket = Tensor::zeros({16});
  fc.weight().grad = bucket.view(0, {2, 3});
  fc.bias().grad = bucket.view(6, {2});
  fc.forward(random_tensor({2, 3}, 12));
  fc.backward(random_tensor({2, 2}, 13));
  const auto flat = bucket.to_vector();
  for (size_t i = 0; i < 8; ++i) EXPECT_NE(flat[i], 0.0f) << i;
  for (size_t i = 8; i < 16; ++i) EXPECT_EQ(flat[i], 0.0f) << i;
}

TEST(Backward, LinearSignalsGradsReadyBeforeComputingDx) {
  Linear fc("fc", 4, 3, 5);
  Tensor x = random_tensor({2, 4}, 14);
  fc.forward(x);
  // Keep a handle on the dx buffer from a first backward: it is reused, so it still holds
  // the first dx while the second backward has not computed the new one yet.
  Tensor dx_buf = fc.backward(random_tensor({2, 3}, 15));
  const std::vector<float> dx_first = dx_buf.to_vector();

  std::vector<std::string> order;
  std::vector<bool> dx_untouched;
  auto hook = [&](Parameter& p) {
    order.push_back(p.name);
    dx_untouched.push_back(dx_buf.to_vector() == dx_first);
  };
  fc.weight().on_grad_ready = hook;
  fc.bias().on_grad_ready = hook;
  const Tensor& dx = fc.backward(random_tensor({2, 3}, 16));
  EXPECT_TRUE(dx.shares_storage_with(dx_buf));
  EXPECT_NE(dx.to_vector(), dx_first);
  EXPECT_EQ(order, (std::vector<std::string>{"fc.weight", "fc.bias"}));
  EXPECT_EQ(dx_untouched, (std::vector<bool>{true, true}));
}

TEST(Backward, MlpSignalsEveryParameterOnceInReverseOrder) {
  auto model = make_mlp(8, {6, 5}, 4, 1);
  std::vector<std::string> order;
  for (Parameter* p : model->parameters())
    p->on_grad_ready = [&](Parameter& q) { order.push_back(q.name); };
  SoftmaxCrossEntropy loss;
  Tensor x = random_tensor({3, 8}, 17);
  Tensor y = random_labels(3, 4, 18);
  for (int step = 0; step < 2; ++step) {
    order.clear();
    loss.forward(model->forward(x), y);
    const Tensor& dx = model->backward(loss.backward());
    EXPECT_FALSE(dx.defined()) << "the model input needs no gradient";
    EXPECT_EQ(order, (std::vector<std::string>{"fc3.weight", "fc3.bias", "fc2.weight", "fc2.bias",
                                               "fc1.weight", "fc1.bias"}));
  }
}

TEST(Forward, ReusesBuffersUntilTheBatchChanges) {
  auto model = make_mlp(5, {4}, 3, 2);
  Tensor x = random_tensor({6, 5}, 19);
  const float* first = model->forward(x).f32();
  Tensor g = random_tensor({6, 3}, 20);
  model->backward(g);
  const float* again = model->forward(random_tensor({6, 5}, 21)).f32();
  EXPECT_EQ(first, again);
  // The last, smaller batch of an epoch: a new shape, computed correctly.
  Tensor small = x.view(0, {2, 5});
  const Tensor& y2 = model->forward(small);
  ASSERT_EQ(y2.shape(), (Shape{2, 3}));
  std::vector<float> y2v = y2.to_vector();
  const Tensor& y6 = model->forward(x);
  for (size_t i = 0; i < y2v.size(); ++i) EXPECT_FLOAT_EQ(y2v[i], y6.f32()[i]);
}

TEST(Linear, ShapeErrorsNameTheLayer) {
  Linear fc("fc2", 256, 10, 0);
  try {
    fc.forward(Tensor::zeros({4, 300}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "fc2: input float32[4, 300] has 300 features, expected 256");
  }
  EXPECT_THROW(fc.forward(Tensor::zeros({256})), Error);
  EXPECT_THROW(fc.backward(Tensor::zeros({4, 10})), Error);  // before forward
  fc.forward(Tensor::zeros({4, 256}));
  EXPECT_THROW(fc.backward(Tensor::zeros({3, 10})), Error);
  EXPECT_THROW(Linear("bad", 0, 3, 0), Error);
}
