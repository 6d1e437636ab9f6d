// The parameter arena (runtime/nn/parameter_arena.h): views that alias one block, tied
// weights once, alignment and zero padding, and the single-pass paths it enables (fused
// SGD/AdamW, zero_grad, the gradient norm) against the per-parameter path, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>

#include "models/gpt.h"
#include "models/mlp.h"
#include "runtime/core/rng.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/parameter_arena.h"
#include "runtime/optim/adamw.h"
#include "runtime/optim/clip_grad.h"
#include "runtime/optim/sgd.h"

using namespace dp;

namespace {

// Odd sizes on purpose: every parameter but the first starts after some padding.
std::vector<std::unique_ptr<Parameter>> odd_params() {
  std::vector<std::unique_ptr<Parameter>> ps;
  const std::vector<Shape> shapes = {{3, 5}, {17}, {16}, {1}, {4, 9}};
  for (size_t i = 0; i < shapes.size(); ++i) {
    ps.push_back(std::make_unique<Parameter>("p" + std::to_string(i), shapes[i]));
    Philox rng(42, i);
    float* v = ps.back()->value.f32();
    for (size_t j = 0; j < ps.back()->value.numel(); ++j) v[j] = rng.normal();
  }
  return ps;
}

std::vector<Parameter*> raw(const std::vector<std::unique_ptr<Parameter>>& ps) {
  std::vector<Parameter*> out;
  out.reserve(ps.size());
  for (const auto& p : ps) out.push_back(p.get());
  return out;
}

// Every element outside the parameters' ranges of `block` is exactly zero.
void expect_padding_zero(const ParameterArena& a, const Tensor& block) {
  const std::vector<float> v = block.to_vector();
  std::vector<bool> used(v.size(), false);
  for (size_t i = 0; i < a.params().size(); ++i)
    for (size_t j = 0; j < a.params()[i]->value.numel(); ++j) used[a.offset(i) + j] = true;
  for (size_t k = 0; k < v.size(); ++k) {
    if (!used[k]) {
      ASSERT_EQ(v[k], 0.0f) << "padding element " << k;
    }
  }
}

void expect_bits_equal(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.numel(), b.numel()) << what;
  ASSERT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << what << " differs in some bit";
}

// The same pseudo-random gradient for step s in both runs (and non-zero everywhere).
void fill_grads(const std::vector<Parameter*>& ps, int step) {
  for (size_t i = 0; i < ps.size(); ++i) {
    Philox rng(1000 + step, i);
    float* g = ps[i]->grad.f32();
    for (size_t j = 0; j < ps[i]->grad.numel(); ++j) g[j] = rng.normal();
  }
}

}  // namespace

TEST(ParameterArena, ValuesAndGradsAreAlignedViewsThatAliasTheBlocks) {
  auto ps = odd_params();
  std::vector<std::vector<float>> before;
  before.reserve(ps.size());
  for (const auto& p : ps) before.push_back(p->value.to_vector());
  ParameterArena a(raw(ps));
  EXPECT_TRUE(a.intact());
  EXPECT_EQ(a.used(), 15u + 17 + 16 + 1 + 36);
  EXPECT_EQ(a.numel() % ParameterArena::kAlign, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.values().raw()) % 64, 0u);
  size_t end = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    Parameter& p = *ps[i];
    EXPECT_EQ(a.offset(i) % ParameterArena::kAlign, 0u) << p.name;
    EXPECT_GE(a.offset(i), end) << p.name << " overlaps its predecessor";
    EXPECT_LT(a.offset(i), end + ParameterArena::kAlign) << p.name;
    end = a.offset(i) + p.value.numel();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p.value.raw()) % 64, 0u) << p.name;
    EXPECT_EQ(p.value.to_vector(), before[i]) << p.name << ": values copied in";
    EXPECT_TRUE(p.value.shares_storage_with(a.values()));
    EXPECT_TRUE(p.grad.shares_storage_with(a.grads()));
    // Writing through the parameter writes the block, and the other way round.
    p.value.f32()[p.value.numel() - 1] = 100.0f + float(i);
    EXPECT_EQ(a.values().to_vector()[a.offset(i) + p.value.numel() - 1], 100.0f + float(i));
    a.grads().f32()[a.offset(i)] = -3.0f;
    EXPECT_EQ(p.grad.f32()[0], -3.0f);
  }
  expect_padding_zero(a, a.values());
  expect_padding_zero(a, a.grads());
  // Re-pointing one parameter's gradient is noticed (the fused paths then step aside).
  ps[2]->grad = Tensor::zeros({16});
  EXPECT_TRUE(a.values_intact());
  EXPECT_FALSE(a.grads_intact());
}

TEST(ParameterArena, RefusesADuplicateAndKeepsATiedWeightOnce) {
  auto ps = odd_params();
  EXPECT_THROW(ParameterArena({ps[0].get(), ps[1].get(), ps[0].get()}), Error);

  GptConfig cfg;
  cfg.layers = 1;
  cfg.heads = 2;
  cfg.embed = 16;
  cfg.context = 8;
  cfg.vocab = 11;
  GptModel gpt(cfg, 3);
  ParameterArena a(gpt.parameters());
  size_t wte_views = 0, total = 0;
  for (Parameter* p : a.params()) {
    wte_views += p == &gpt.wte();
    total += p->value.numel();
  }
  EXPECT_EQ(wte_views, 1u) << "the tied embedding / output head is one parameter";
  EXPECT_EQ(a.used(), total);
  EXPECT_TRUE(gpt.wte().value.shares_storage_with(a.values()));
}

TEST(ParameterArena, ZeroGradIsOneMemsetOfTheBlock) {
  auto ps = odd_params();
  ParameterArena a(raw(ps));
  SGD opt(raw(ps), 0.9f, 0.0f, 0.0f, false, &a);
  fill_grads(raw(ps), 0);
  opt.zero_grad();
  for (float g : a.grads().to_vector()) ASSERT_EQ(g, 0.0f);
  // A parameter whose gradient was re-pointed is still cleared (the per-parameter path).
  ps[1]->grad = Tensor::from_vector({17}, std::vector<float>(17, 2.0f));
  opt.zero_grad();
  for (float g : ps[1]->grad.to_vector()) ASSERT_EQ(g, 0.0f);
}

TEST(ParameterArena, GradNormAndClippingInOnePassMatchThePerParameterPath) {
  auto ps = odd_params();
  auto ref = odd_params();
  ParameterArena a(raw(ps));
  fill_grads(raw(ps), 5);
  fill_grads(raw(ref), 5);
  const double fused = grad_norm(raw(ps), &a);
  const double per_param = grad_norm(raw(ref));
  EXPECT_NEAR(fused, per_param, 1e-12 * per_param);
  // Clipping scales every element by the same float: bit-identical.
  const double max_norm = per_param / 3;
  clip_grad_norm(raw(ps), max_norm, &a);
  clip_grad_norm(raw(ref), max_norm);
  for (size_t i = 0; i < ps.size(); ++i) expect_bits_equal(ps[i]->grad, ref[i]->grad, ps[i]->name);
  expect_padding_zero(a, a.grads());
  // A NaN anywhere makes the one-pass norm NaN, as the per-parameter one.
  ps[3]->grad.f32()[0] = std::nanf("");
  EXPECT_TRUE(std::isnan(grad_norm(raw(ps), &a)));
}

struct FusedCase {
  const char* name;
  bool adamw;
  float momentum, weight_decay;
  bool nesterov;
  bool decay_1d = true;  // false: the 1-D parameters get no decay (the pass runs in pieces)
};

class FusedOptimizer : public ::testing::TestWithParam<FusedCase> {};

// Several steps of the fused update on an arena against the per-parameter update on separate
// tensors: values and every state tensor equal bit for bit, the padding still zero.
TEST_P(FusedOptimizer, IsBitIdenticalToThePerParameterPath) {
  const FusedCase c = GetParam();
  auto ps = odd_params();
  auto ref = odd_params();
  ParameterArena a(raw(ps));
  auto make = [&](const std::vector<Parameter*>& params,
                  ParameterArena* arena) -> std::unique_ptr<Optimizer> {
    if (c.adamw) return std::make_unique<AdamW>(params, 0.9f, 0.95f, 1e-8f, c.weight_decay, arena);
    return std::make_unique<SGD>(params, c.momentum, 0.0f, c.weight_decay, c.nesterov, arena);
  };
  auto fused = make(raw(ps), &a);
  auto plain = make(raw(ref), nullptr);
  if (!c.decay_1d) {
    // odd_params(): 2-D, then three 1-D, then 2-D: three ranges, padding inside the middle one.
    const std::vector<bool> mask = {true, false, false, false, true};
    fused->set_weight_decay_mask(mask);
    plain->set_weight_decay_mask(mask);
  }
  ASSERT_TRUE(fused->fused());
  ASSERT_FALSE(plain->fused());
  for (int step = 0; step < 5; ++step) {
    fill_grads(raw(ps), step);
    fill_grads(raw(ref), step);
    const float lr = 0.01f * float(step + 1);
    fused->step(lr);
    plain->step(lr);
  }
  for (size_t i = 0; i < ps.size(); ++i)
    expect_bits_equal(ps[i]->value, ref[i]->value, ps[i]->name);
  auto fs = fused->state_tensors();
  auto rs = plain->state_tensors();
  ASSERT_EQ(fs.size(), rs.size());
  for (size_t i = 0; i < fs.size(); ++i) {
    EXPECT_EQ(fs[i].first, rs[i].first) << "the checkpoint names stay per parameter";
    expect_bits_equal(*fs[i].second, *rs[i].second, fs[i].first);
  }
  expect_padding_zero(a, a.values());
}

INSTANTIATE_TEST_SUITE_P(Cases, FusedOptimizer,
                         ::testing::Values(FusedCase{"sgd", false, 0.0f, 0.0f, false},
                                           FusedCase{"sgd_wd", false, 0.0f, 0.01f, false},
                                           FusedCase{"momentum_wd", false, 0.9f, 0.01f, false},
                                           FusedCase{"nesterov", false, 0.9f, 0.0f, true},
                                           FusedCase{"adamw", true, 0.0f, 0.0f, false},
                                           FusedCase{"adamw_wd", true, 0.0f, 0.1f, false},
                                           FusedCase{"sgd_wd_2d", false, 0.9f, 0.01f, false, false},
                                           FusedCase{"adamw_wd_2d", true, 0.0f, 0.1f, false,
                                                     false}),
                         [](const auto& info) { return std::string(info.param.name); });

// The model works unchanged on its rebound parameters: a GPT (tied embedding) trained for a
// few AdamW steps with clipping on an arena ends bit-identical to the same model without.
TEST(ParameterArena, GptTrainsBitIdenticallyOnTheArena) {
  GptConfig cfg;
  cfg.layers = 2;
  cfg.heads = 2;
  cfg.embed = 16;
  cfg.context = 8;
  cfg.vocab = 13;
  GptModel with(cfg, 9), without(cfg, 9);
  ParameterArena a(with.parameters());
  AdamW opt_a(with.parameters(), 0.9f, 0.95f, 1e-8f, 0.1f, &a);
  AdamW opt_b(without.parameters(), 0.9f, 0.95f, 1e-8f, 0.1f);
  ASSERT_TRUE(opt_a.fused());
  const int64_t B = 2, T = 8;
  for (int step = 0; step < 4; ++step) {
    Tensor x = Tensor::zeros({B, T}, DType::i32), y = Tensor::zeros({B * T}, DType::i32);
    Philox rng(77, step);
    for (int64_t i = 0; i < B * T; ++i) {
      x.data<int32_t>()[i] = int32_t(rng.below(cfg.vocab));
      y.data<int32_t>()[i] = int32_t(rng.below(cfg.vocab));
    }
    for (auto [model, opt, arena] :
         {std::tuple<GptModel*, Optimizer*, ParameterArena*>{&with, &opt_a, &a},
          {&without, &opt_b, nullptr}}) {
      SoftmaxCrossEntropy loss;
      opt->zero_grad();
      loss.forward(model->forward(x), y);
      model->backward(loss.backward());
      clip_grad_norm(opt->params(), 0.5, arena);
      opt->step(1e-2f);
    }
  }
  ASSERT_TRUE(opt_a.fused()) << "nothing re-pointed a parameter";
  const auto pa = with.parameters(), pb = without.parameters();
  for (size_t i = 0; i < pa.size(); ++i) expect_bits_equal(pa[i]->value, pb[i]->value, pa[i]->name);
  expect_padding_zero(a, a.values());
  expect_padding_zero(a, a.grads());
}

// A gradient re-pointed elsewhere (what the Reducer does for a bucket that is not a range of
// the arena) turns the fused path off: the step then reads every gradient where it is.
TEST(ParameterArena, AReboundGradientTurnsTheFusedStepOff) {
  auto ps = odd_params();
  auto ref = odd_params();
  ParameterArena a(raw(ps));
  AdamW fused(raw(ps), 0.9f, 0.95f, 1e-8f, 0.1f, &a);
  AdamW plain(raw(ref), 0.9f, 0.95f, 1e-8f, 0.1f);
  ps[2]->grad = Tensor::zeros(ps[2]->value.shape());
  EXPECT_FALSE(fused.fused());
  for (int step = 0; step < 3; ++step) {
    fill_grads(raw(ps), step);
    fill_grads(raw(ref), step);
    fused.step(0.01f);
    plain.step(0.01f);
  }
  for (size_t i = 0; i < ps.size(); ++i)
    expect_bits_equal(ps[i]->value, ref[i]->value, ps[i]->name);
  // And eps == 0 steps per parameter: the padding would compute 0 / 0.
  AdamW no_eps(raw(ps), 0.9f, 0.95f, 0.0f, 0.1f, &a);
  a.rebind_grads(a.grads());
  EXPECT_TRUE(a.intact());
  EXPECT_FALSE(no_eps.fused());
}
