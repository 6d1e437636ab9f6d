// The CNN layers under bf16 mixed precision (--precision bf16) against their float32 selves:
// given the same bfloat16-representable operands, a bfloat16 layer must give the float32
// layer's result rounded once (within one bfloat16 unit), with float32 master gradients that
// match to float32 rounding. The float32 layers themselves are checked against finite
// differences and PyTorch (test_cnn_gradcheck.cpp, test_cnn_layer_reference.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "models/cnn.h"
#include "runtime/core/bf16.h"
#include "runtime/nn/batchnorm2d.h"
#include "runtime/nn/conv2d.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/flatten.h"
#include "runtime/nn/maxpool2d.h"
#include "runtime/ops/cast.h"
#include "tests/support/gradcheck.h"

using namespace dp;
using test::random_tensor;

namespace {

Tensor to_bf16(const Tensor& x) {
  Tensor y = Tensor::zeros(x.shape(), DType::bf16);
  cast_into(x, y);
  return y;
}

// x with every element rounded to the nearest bfloat16 (still float32).
Tensor rounded(const Tensor& x) {
  Tensor y = x.clone();
  for (size_t i = 0; i < y.numel(); ++i) y.f32()[i] = round_to_bf16(y.f32()[i]);
  return y;
}

// One bfloat16 unit in the last place at |v| (8 significant bits).
double ulp(double v) {
  return std::ldexp(1.0, std::ilogb(std::max(std::fabs(v), 1e-30)) - 7);
}

// got (bfloat16) is want (float32) rounded once: within one unit at want, plus float32
// summation-order noise relative to the largest |want| (`floor`).
void expect_rounded_from(const Tensor& got, const Tensor& want, double floor,
                         const std::string& what) {
  ASSERT_EQ(got.dtype(), DType::bf16) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<float> g = got.to_vector(), w = want.to_vector();
  double scale = 0;
  for (float v : w) scale = std::max(scale, double(std::fabs(v)));
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_NEAR(g[i], w[i], ulp(w[i]) + floor * scale) << what << " element " << i;
}

void expect_close(const Tensor& got, const Tensor& want, double rtol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  EXPECT_LE(max_rel_diff(got, want), rtol) << what;
}

}  // namespace

TEST(CnnBf16, Conv2dIsTheFloat32ConvOfRoundedOperands) {
  for (bool input_bf16 : {false, true}) {
    SCOPED_TRACE(input_bf16 ? "bfloat16 input" : "float32 input");
    Conv2d ref("conv", 3, 5, 3, 2, 1, 7), mixed("conv", 3, 5, 3, 2, 1, 7);
    mixed.set_compute_dtype(DType::bf16);
    // The bfloat16 layer rounds its weight each forward; the reference gets it pre-rounded.
    ref.weight().value.copy_(rounded(ref.weight().value));
    ref.bias().value.copy_(rounded(ref.bias().value));
    const Tensor x = rounded(random_tensor({2, 3, 7, 6}, 1, -2.0f, 2.0f));
    const Tensor& y = mixed.forward(input_bf16 ? to_bf16(x) : x);
    const Tensor& y_ref = ref.forward(x);
    expect_rounded_from(y, y_ref, 1e-6, "output");

    const Tensor dy = rounded(random_tensor(y.shape(), 2));
    mixed.weight().grad.fill_(0.25f);  // backward accumulates into the float32 master
    ref.weight().grad.fill_(0.25f);
    const Tensor& dx = mixed.backward(to_bf16(dy));
    const Tensor& dx_ref = ref.backward(dy);
    EXPECT_EQ(mixed.weight().grad.dtype(), DType::f32);
    expect_close(mixed.weight().grad, ref.weight().grad, 1e-5, "dW");
    expect_close(mixed.bias().grad, ref.bias().grad, 1e-5, "db");
    if (input_bf16) {
      expect_rounded_from(dx, dx_ref, 1e-6, "dx");
    } else {
      ASSERT_EQ(dx.dtype(), DType::f32) << "dx comes back in the input's dtype";
      expect_close(dx, dx_ref, 1e-5, "dx");
    }
  }
}

TEST(CnnBf16, BatchNorm2dComputesInFloat32AndRoundsOnce) {
  for (bool training : {true, false}) {
    SCOPED_TRACE(training ? "training" : "eval");
    BatchNorm2d ref("bn", 3), mixed("bn", 3);
    mixed.set_compute_dtype(DType::bf16);
    for (BatchNorm2d* bn : {&ref, &mixed}) {
      bn->weight().value.copy_(Tensor::from_vector({3}, std::vector<float>{1.5f, -0.5f, 2.0f}));
      bn->running_var().value.copy_(Tensor::from_vector({3}, std::vector<float>{0.5f, 2.0f, 1.0f}));
      bn->train(training);
    }
    const Tensor x = rounded(random_tensor({4, 3, 5, 5}, 3, -1.0f, 3.0f));
    const Tensor& y = mixed.forward(to_bf16(x));
    expect_rounded_from(y, ref.forward(x), 1e-6, "output");
    // Statistics in float32 on the same values: the running buffers agree to rounding.
    expect_close(mixed.running_mean().value, ref.running_mean().value, 1e-6, "running_mean");
    expect_close(mixed.running_var().value, ref.running_var().value, 1e-6, "running_var");
    const Tensor dy = rounded(random_tensor(x.shape(), 4));
    expect_rounded_from(mixed.backward(to_bf16(dy)), ref.backward(dy), 1e-6, "dx");
    expect_close(mixed.weight().grad, ref.weight().grad, 1e-5, "dweight");
    expect_close(mixed.bias().grad, ref.bias().grad, 1e-5, "dbias");
  }
}

TEST(CnnBf16, MaxPool2dAndFlattenAreExact) {
  MaxPool2d ref("pool", 3, 2, 1), mixed("pool", 3, 2, 1);
  const Tensor x = rounded(random_tensor({2, 3, 7, 8}, 5));
  const Tensor& y = mixed.forward(to_bf16(x));
  ASSERT_EQ(y.dtype(), DType::bf16);
  EXPECT_EQ(y.to_vector(), ref.forward(x).to_vector());
  const int32_t* am = mixed.argmax().data<int32_t>();
  EXPECT_EQ(std::vector<int32_t>(am, am + mixed.argmax().numel()),
            std::vector<int32_t>(ref.argmax().data<int32_t>(),
                                 ref.argmax().data<int32_t>() + ref.argmax().numel()));
  const Tensor dy = rounded(random_tensor(y.shape(), 6));
  // Overlapping windows sum up to four gradients: float32 in both, rounded once here.
  expect_rounded_from(mixed.backward(to_bf16(dy)), ref.backward(dy), 0.0, "dx");

  Flatten flat("flatten");
  const Tensor x16 = to_bf16(x);
  const Tensor& f = flat.forward(x16);
  EXPECT_EQ(f.dtype(), DType::bf16);
  EXPECT_TRUE(f.shares_storage_with(x16));
}

TEST(CnnBf16, ModelLossAndGradientsMatchFloat32WithinBf16Tolerance) {
  CnnConfig cfg;
  cfg.channels = {4, 8};
  cfg.fc_hidden = {16};
  auto ref = make_cnn({1, 12, 12}, 5, cfg, 3);
  auto mixed = make_cnn({1, 12, 12}, 5, cfg, 3);
  mixed->set_compute_dtype(DType::bf16);
  const Tensor x = random_tensor({8, 144}, 7);
  std::vector<int32_t> labels(8);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = int32_t(i % 5);
  const Tensor y = Tensor::from_vector({8}, labels);
  SoftmaxCrossEntropy l_ref, l_mixed;
  const float loss_ref = l_ref.forward(ref->forward(x), y);
  const Tensor& logits = mixed->forward(x);
  EXPECT_EQ(logits.dtype(), DType::bf16);
  const float loss_mixed = l_mixed.forward(logits, y);
  EXPECT_NEAR(loss_mixed, loss_ref, 0.02 * loss_ref);
  ref->backward(l_ref.backward());
  mixed->backward(l_mixed.backward());
  auto pr = ref->parameters(), pm = mixed->parameters();
  ASSERT_EQ(pr.size(), pm.size());
  for (size_t k = 0; k < pr.size(); ++k) {
    // Every layer rounds its activations and gradients to 8 bits (~0.4% each) on the way up
    // and down, and BatchNorm's backward subtracts its mean terms from those rounded values:
    // the first convolution's gradient, 8 roundings and two BatchNorms from the loss, lands
    // ~7% from float32 (in norm), the classifier's within 1%. 10%: an error in a layer (a
    // missing term, a wrong index) is an O(1) difference.
    const std::vector<float> gr = pr[k]->grad.to_vector(), gm = pm[k]->grad.to_vector();
    double num = 0, den = 0;
    for (size_t i = 0; i < gr.size(); ++i) {
      num += double(gr[i] - gm[i]) * double(gr[i] - gm[i]);
      den += double(gr[i]) * gr[i];
    }
    EXPECT_EQ(pm[k]->grad.dtype(), DType::f32) << pr[k]->name;
    EXPECT_LE(std::sqrt(num / den), 0.1) << pr[k]->name;
  }
}
