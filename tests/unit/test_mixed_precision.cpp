// bf16 mixed precision on the CPU (--precision bf16): each layer against a reference built
// from the same bfloat16-rounded operands, against its own float32 twin within bfloat16
// tolerance, and whole-model training against float32 training.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "models/mlp.h"
#include "runtime/core/bf16.h"
#include "runtime/core/rng.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/linear.h"
#include "runtime/nn/relu.h"
#include "runtime/ops/cast.h"
#include "runtime/optim/sgd.h"

using namespace dp;

namespace {

Tensor random_f32(const Shape& shape, uint64_t seed, float scale = 1.0f) {
  Philox rng(seed, 17);
  Tensor t = Tensor::zeros(shape);
  for (size_t i = 0; i < t.numel(); ++i) t.f32()[i] = scale * (2.0f * rng.uniform() - 1.0f);
  return t;
}

Tensor to_bf16(const Tensor& x) {
  Tensor y = Tensor::zeros(x.shape(), DType::bf16);
  cast_into(x, y);
  return y;
}

// One bfloat16 unit in the last place at |v| (8 significant bits).
double ulp(double v) {
  return std::ldexp(1.0, std::ilogb(std::max(std::fabs(v), 1e-30)) - 7);
}

Tensor labels(int64_t batch, int classes, uint64_t seed) {
  Philox rng(seed, 3);
  std::vector<int32_t> v(static_cast<size_t>(batch));
  for (auto& l : v) l = static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes)));
  return Tensor::from_vector({batch}, v);
}

}  // namespace

TEST(MixedPrecision, LinearForwardIsTheRoundedSumOfRoundedOperands) {
  const int64_t batch = 7, in = 33, out = 12;
  Linear fc("fc", in, out, 3);
  fc.set_compute_dtype(DType::bf16);
  Tensor x = random_f32({batch, in}, 1);
  const Tensor& y = fc.forward(x);
  ASSERT_EQ(y.dtype(), DType::bf16);
  ASSERT_EQ(y.shape(), (Shape{batch, out}));
  const std::vector<float> yv = y.to_vector();
  const float* w = fc.weight().value.f32();
  const float* b = fc.bias().value.f32();
  for (int64_t r = 0; r < batch; ++r) {
    for (int64_t j = 0; j < out; ++j) {
      double ref = round_to_bf16(b[j]);
      for (int64_t i = 0; i < in; ++i)
        ref += double(round_to_bf16(x.f32()[r * in + i])) * round_to_bf16(w[j * in + i]);
      EXPECT_NEAR(yv[size_t(r * out + j)], ref, ulp(ref)) << r << "," << j;
    }
  }
}

TEST(MixedPrecision, LinearBackwardAccumulatesFloat32MasterGradients) {
  const int64_t batch = 9, in = 20, out = 6;
  Linear fc("fc", in, out, 5);
  fc.set_compute_dtype(DType::bf16);
  Tensor x = random_f32({batch, in}, 2);
  fc.forward(x);
  Tensor dy = to_bf16(random_f32({batch, out}, 4));
  fc.weight().grad.fill_(0.5f);  // backward accumulates: the old value must survive
  const Tensor& dx = fc.backward(dy);
  ASSERT_EQ(fc.weight().grad.dtype(), DType::f32);
  ASSERT_EQ(dx.dtype(), DType::f32) << "dx comes back in the input's dtype";
  const std::vector<float> g = dy.to_vector();
  const float* w = fc.weight().value.f32();
  for (int64_t j = 0; j < out; ++j) {
    double db = 0;
    for (int64_t r = 0; r < batch; ++r) db += g[size_t(r * out + j)];
    EXPECT_NEAR(fc.bias().grad.f32()[j], db, 1e-5 * (1 + std::fabs(db)));
    for (int64_t i = 0; i < in; ++i) {
      double dw = 0.5;
      for (int64_t r = 0; r < batch; ++r)
        dw += double(g[size_t(r * out + j)]) * round_to_bf16(x.f32()[r * in + i]);
      EXPECT_NEAR(fc.weight().grad.f32()[j * in + i], dw, 1e-5 * (1 + std::fabs(dw)));
    }
  }
  for (int64_t r = 0; r < batch; ++r) {
    for (int64_t i = 0; i < in; ++i) {
      double ref = 0;
      for (int64_t j = 0; j < out; ++j)
        ref += double(g[size_t(r * out + j)]) * round_to_bf16(w[j * in + i]);
      EXPECT_NEAR(dx.f32()[r * in + i], ref, 1e-5 * (1 + std::fabs(ref)));
    }
  }
}

TEST(MixedPrecision, GradientsMatchTheFloat32LayersWithinBf16Tolerance) {
  // The float32 layers are checked against finite differences (test_gradcheck.cpp); the
  // bfloat16 ones must agree with them to bfloat16's precision (8 bits: ~0.4% per rounding).
  auto ref = make_mlp(24, {32, 16}, 5, 11);
  auto mixed = make_mlp(24, {32, 16}, 5, 11);
  mixed->set_compute_dtype(DType::bf16);
  Tensor x = random_f32({16, 24}, 6);
  Tensor y = labels(16, 5, 7);
  SoftmaxCrossEntropy l_ref, l_mixed;
  const float loss_ref = l_ref.forward(ref->forward(x), y);
  const float loss_mixed = l_mixed.forward(mixed->forward(x), y);
  EXPECT_NEAR(loss_mixed, loss_ref, 0.01 * loss_ref);
  ref->backward(l_ref.backward());
  mixed->backward(l_mixed.backward());
  auto pr = ref->parameters(), pm = mixed->parameters();
  for (size_t k = 0; k < pr.size(); ++k) {
    const std::vector<float> a = pm[k]->grad.to_vector(), b = pr[k]->grad.to_vector();
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
      den += double(b[i]) * b[i];
    }
    EXPECT_LT(std::sqrt(num / den), 0.03) << pr[k]->name;
  }
}

TEST(MixedPrecision, ReluAndLossKeepTheirDtypes) {
  ReLU relu("relu");
  Tensor x = to_bf16(random_f32({4, 10}, 8));
  const Tensor& y = relu.forward(x);
  ASSERT_EQ(y.dtype(), DType::bf16);
  const std::vector<float> xv = x.to_vector(), yv = y.to_vector();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_EQ(yv[i], xv[i] > 0 ? xv[i] : 0.0f);
  Tensor dy = to_bf16(random_f32({4, 10}, 9));
  const std::vector<float> dyv = dy.to_vector(), dxv = relu.backward(dy).to_vector();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_EQ(dxv[i], xv[i] > 0 ? dyv[i] : 0.0f);
  EXPECT_THROW(relu.backward(Tensor::zeros({4, 10})), Error) << "float32 grad for a bf16 output";

  // The loss of bfloat16 logits is the float32 loss of the widened logits, exactly, and its
  // gradient is the float32 gradient rounded once.
  Tensor logits16 = to_bf16(random_f32({6, 5}, 10, 3.0f));
  Tensor logits32 = Tensor::from_vector({6, 5}, logits16.to_vector());
  Tensor t = labels(6, 5, 11);
  SoftmaxCrossEntropy a, b;
  EXPECT_EQ(a.forward(logits16, t), b.forward(logits32, t));
  EXPECT_EQ(a.correct(), b.correct());
  const Tensor& g16 = a.backward(0.5f);
  ASSERT_EQ(g16.dtype(), DType::bf16);
  const std::vector<float> g32 = b.backward(0.5f).to_vector(), gv = g16.to_vector();
  for (size_t i = 0; i < g32.size(); ++i) EXPECT_EQ(gv[i], round_to_bf16(g32[i]));
}

TEST(MixedPrecision, ComputeDtypeReachesEveryLayerAndIsChecked) {
  auto model = make_mlp(8, {4}, 3, 0);
  model->set_compute_dtype(DType::bf16);
  for (size_t i = 0; i < model->size(); ++i)
    EXPECT_EQ(model->child(i).compute_dtype(), DType::bf16) << model->child(i).name();
  EXPECT_EQ(model->forward(random_f32({2, 8}, 1)).dtype(), DType::bf16);
  for (Parameter* p : model->parameters()) {
    EXPECT_EQ(p->value.dtype(), DType::f32) << p->name << ": master weights stay float32";
    EXPECT_EQ(p->grad.dtype(), DType::f32) << p->name;
  }
  EXPECT_THROW(model->set_compute_dtype(DType::i32), Error);
  Linear fp32("fc", 8, 4, 0);
  EXPECT_THROW(fp32.forward(to_bf16(random_f32({2, 8}, 1))), Error)
      << "a float32 layer handed bfloat16 activations";
}

TEST(MixedPrecision, TrainsLikeFloat32) {
  // The same model, data and optimizer in both precisions: the loss curves must agree to
  // within bfloat16 noise and both must learn.
  const int64_t batch = 64;
  Tensor x = random_f32({batch, 20}, 12);
  std::vector<int32_t> ys;  // learnable: the class is the largest of the first 4 features
  for (int64_t r = 0; r < batch; ++r) {
    const float* row = x.f32() + r * 20;
    ys.push_back(int32_t(std::max_element(row, row + 4) - row));
  }
  Tensor y = Tensor::from_vector({batch}, ys);
  std::vector<float> curve[2];
  for (int mixed = 0; mixed < 2; ++mixed) {
    auto model = make_mlp(20, {64, 32}, 4, 21);
    if (mixed) model->set_compute_dtype(DType::bf16);
    SGD opt(model->parameters(), 0.9f);
    SoftmaxCrossEntropy loss;
    for (int step = 0; step < 40; ++step) {
      opt.zero_grad();
      curve[mixed].push_back(loss.forward(model->forward(x), y));
      model->backward(loss.backward());
      opt.step(0.05f);
    }
  }
  for (size_t s = 0; s < curve[0].size(); ++s)
    EXPECT_NEAR(curve[1][s], curve[0][s], 0.02 * curve[0][s] + 0.01) << "step " << s;
  EXPECT_LT(curve[1].back(), 0.5f * curve[1].front());
}
