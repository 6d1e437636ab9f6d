// Optimizers and LR schedules against the PyTorch update rules written out in double.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <vector>

#include "runtime/core/rng.h"
#include "runtime/optim/adamw.h"
#include "runtime/optim/clip_grad.h"
#include "runtime/optim/lr_schedule.h"
#include "runtime/optim/sgd.h"
#include "runtime/train/optimizer_setup.h"
#include "tests/support/temp_dir.h"

using namespace dp;

namespace {

std::vector<float> random_vec(size_t n, uint64_t seed) {
  Philox rng(seed, 3);
  std::vector<float> v(n);
  for (float& x : v) x = 2.0f * rng.uniform() - 1.0f;
  return v;
}

// The gradient "seen" at step t: varies with t so that momentum and moments matter.
std::vector<float> grad_at(size_t n, int t) {
  return random_vec(n, 100 + uint64_t(t));
}

constexpr size_t kN = 7;
constexpr int kSteps = 4;

struct SgdCase {
  float momentum, dampening, weight_decay;
  bool nesterov;
};

void PrintTo(const SgdCase& c, std::ostream* os) {
  *os << "momentum=" << c.momentum << " dampening=" << c.dampening
      << " weight_decay=" << c.weight_decay << " nesterov=" << c.nesterov;
}

// torch.optim.SGD._single_tensor_sgd, in double.
std::vector<double> ref_sgd(const SgdCase& c, const std::vector<float>& p0,
                            const std::vector<float>& lrs) {
  std::vector<double> p(p0.begin(), p0.end()), buf(p0.size());
  for (int t = 0; t < kSteps; ++t) {
    std::vector<float> g = grad_at(p.size(), t);
    for (size_t i = 0; i < p.size(); ++i) {
      double d = g[i] + double(c.weight_decay) * p[i];
      if (c.momentum != 0) {
        buf[i] = t == 0 ? d : c.momentum * buf[i] + (1.0 - c.dampening) * d;
        d = c.nesterov ? d + c.momentum * buf[i] : buf[i];
      }
      p[i] -= double(lrs[t]) * d;
    }
  }
  return p;
}

}  // namespace

class SgdRule : public ::testing::TestWithParam<SgdCase> {};

TEST_P(SgdRule, MatchesTorchFormulas) {
  const SgdCase c = GetParam();
  Parameter p("w", {int64_t(kN)});
  const std::vector<float> p0 = random_vec(kN, 1);
  std::copy(p0.begin(), p0.end(), p.value.f32());
  SGD opt({&p}, c.momentum, c.dampening, c.weight_decay, c.nesterov);
  const std::vector<float> lrs = {0.1f, 0.05f, 0.2f, 0.01f};
  for (int t = 0; t < kSteps; ++t) {
    std::vector<float> g = grad_at(kN, t);
    std::copy(g.begin(), g.end(), p.grad.f32());
    opt.step(lrs[t]);
    // The gradient is an input: the update must not change it (DDP may still read it).
    EXPECT_EQ(p.grad.to_vector(), g);
  }
  std::vector<double> want = ref_sgd(c, p0, lrs);
  for (size_t i = 0; i < kN; ++i) EXPECT_NEAR(p.value.f32()[i], want[i], 1e-6) << i;
  EXPECT_EQ(opt.steps(), kSteps);
}

INSTANTIATE_TEST_SUITE_P(Variants, SgdRule,
                         ::testing::Values(SgdCase{0.0f, 0.0f, 0.0f, false},    // plain
                                           SgdCase{0.9f, 0.0f, 0.0f, false},    // momentum
                                           SgdCase{0.9f, 0.3f, 0.0f, false},    // dampening
                                           SgdCase{0.9f, 0.0f, 0.0f, true},     // nesterov
                                           SgdCase{0.0f, 0.0f, 0.01f, false},   // weight decay
                                           SgdCase{0.8f, 0.0f, 0.05f, true}));  // all

TEST(SGD, ValidatesConfiguration) {
  Parameter p("w", {3});
  EXPECT_THROW(SGD({&p}, 0.0f, 0.0f, 0.0f, true), Error);  // nesterov without momentum
  EXPECT_THROW(SGD({&p}, 0.9f, 0.1f, 0.0f, true), Error);  // nesterov with dampening
  EXPECT_THROW(SGD({&p}, -0.1f), Error);
  EXPECT_THROW(SGD({&p}, 0.0f, 0.0f, -1.0f), Error);
  EXPECT_THROW(SGD({&p, &p}), Error);
  EXPECT_THROW(SGD({nullptr}), Error);
  SGD ok({&p}, 0.9f);
  EXPECT_THROW(ok.step(-0.1f), Error);
  EXPECT_THROW(ok.step(std::nanf("")), Error);
  EXPECT_EQ(ok.describe(),
            "SGD(momentum=0.9, dampening=0, weight_decay=0, nesterov=false, params=1)");
}

// `decay_a` false: the 1-D parameter is left out of weight decay (a parameter group with
// weight_decay=0 in torch), the 2-D one keeps it.
void check_adamw_against_torch(bool decay_a) {
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  Parameter a("a", {int64_t(kN)}), b("b", {2, 3});
  std::vector<Parameter*> params = {&a, &b};
  std::vector<std::vector<float>> p0 = {random_vec(kN, 2), random_vec(6, 3)};
  for (size_t k = 0; k < 2; ++k) std::copy(p0[k].begin(), p0[k].end(), params[k]->value.f32());
  AdamW opt(params, b1, b2, eps, 0.1f);
  if (!decay_a) opt.set_weight_decay_mask({false, true});
  const double wds[2] = {decay_a ? 0.1 : 0.0, 0.1};
  const std::vector<float> lrs = {1e-2f, 3e-3f, 1e-2f, 5e-3f};

  std::vector<std::vector<double>> p(2), m(2), v(2);
  for (size_t k = 0; k < 2; ++k) {
    p[k].assign(p0[k].begin(), p0[k].end());
    m[k].assign(p0[k].size(), 0.0);
    v[k].assign(p0[k].size(), 0.0);
  }
  for (int t = 0; t < kSteps; ++t) {
    for (size_t k = 0; k < 2; ++k) {
      std::vector<float> g = grad_at(p0[k].size(), 10 * int(k) + t);
      std::copy(g.begin(), g.end(), params[k]->grad.f32());
      // torch.optim.adamw._single_tensor_adamw (amsgrad=False), in double.
      const double lr = lrs[t], step = t + 1;
      const double bc1 = 1 - std::pow(double(b1), step), bc2 = 1 - std::pow(double(b2), step);
      for (size_t i = 0; i < p[k].size(); ++i) {
        p[k][i] *= 1 - lr * wds[k];
        m[k][i] = b1 * m[k][i] + (1 - double(b1)) * g[i];
        v[k][i] = b2 * v[k][i] + (1 - double(b2)) * double(g[i]) * g[i];
        p[k][i] -= (lr / bc1) * m[k][i] / (std::sqrt(v[k][i]) / std::sqrt(bc2) + eps);
      }
    }
    opt.step(lrs[t]);
  }
  for (size_t k = 0; k < 2; ++k)
    for (size_t i = 0; i < p[k].size(); ++i)
      EXPECT_NEAR(params[k]->value.f32()[i], p[k][i], 1e-6) << params[k]->name << "[" << i << "]";
}

TEST(AdamW, MatchesTorchFormulas) {
  check_adamw_against_torch(true);
}

TEST(AdamW, AParameterLeftOutOfWeightDecayIsUpdatedAsWithoutIt) {
  check_adamw_against_torch(false);
}

// SGD's decay is an L2 term in the gradient: a masked parameter steps by lr * grad alone.
TEST(SGD, AParameterLeftOutOfWeightDecayStepsByItsGradientAlone) {
  Parameter a("a", {3}), b("b", {1, 3});
  for (Parameter* p : {&a, &b}) {
    p->value.fill_(2.0f);
    p->grad.fill_(0.5f);
  }
  SGD opt({&a, &b}, 0.0f, 0.0f, 0.25f);
  opt.set_weight_decay_mask({false, true});
  opt.step(0.1f);
  EXPECT_EQ(a.value.to_vector(), std::vector<float>(3, 2.0f - 0.1f * 0.5f));
  EXPECT_EQ(b.value.to_vector(), std::vector<float>(3, 2.0f - 0.1f * (0.5f + 0.25f * 2.0f)));
  EXPECT_EQ(opt.describe(),
            "SGD(momentum=0, dampening=0, weight_decay=0.25, no decay on 1 of 2 parameters, "
            "nesterov=false, params=2)");
  EXPECT_THROW(opt.set_weight_decay_mask({true}), Error);
}

// --weight-decay-1d=false: nanoGPT's p.dim() >= 2 rule, as llm.c decays GPT-2's tensors.
TEST(MakeOptimizer, WeightDecay1dFalseLeavesOutParametersOfFewerThanTwoDimensions) {
  Parameter bias("bias", {4}), w("w", {4, 4}), conv("conv", {2, 1, 3, 3}), scalar("s", {1});
  TrainConfig cfg;
  cfg.optimizer = "adamw";
  cfg.weight_decay = 0.1f;
  auto all = make_optimizer(cfg, {&bias, &w, &conv, &scalar}, nullptr);
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(all->decays(i)) << i;
  cfg.weight_decay_1d = false;
  for (const char* kind : {"adamw", "sgd"}) {
    cfg.optimizer = kind;
    auto masked = make_optimizer(cfg, {&bias, &w, &conv, &scalar}, nullptr);
    EXPECT_FALSE(masked->decays(0)) << kind;
    EXPECT_TRUE(masked->decays(1)) << kind;
    EXPECT_TRUE(masked->decays(2)) << kind;
    EXPECT_FALSE(masked->decays(3)) << kind;
  }
}

TEST(AdamW, ValidatesConfiguration) {
  Parameter p("w", {3});
  EXPECT_THROW(AdamW({&p}, 1.0f), Error);
  EXPECT_THROW(AdamW({&p}, 0.9f, -0.1f), Error);
  EXPECT_THROW(AdamW({&p}, 0.9f, 0.999f, -1e-8f), Error);
  EXPECT_THROW(AdamW({&p}, 0.9f, 0.999f, 1e-8f, -0.01f), Error);
}

TEST(Optimizer, ZeroGrad) {
  Parameter p("w", {4});
  p.grad.fill_(3.0f);
  SGD opt({&p});
  opt.zero_grad();
  EXPECT_EQ(p.grad.to_vector(), std::vector<float>(4, 0.0f));
}

TEST(ClipGradNorm, ScalesOnlyAboveTheLimit) {
  Parameter a("a", {2}), b("b", {1});
  a.grad = Tensor::from_vector({2}, std::vector<float>{3.0f, 0.0f});
  b.grad = Tensor::from_vector({1}, std::vector<float>{4.0f});
  // total = 5: below 10 nothing changes.
  EXPECT_NEAR(clip_grad_norm({&a, &b}, 10.0), 5.0, 1e-12);
  EXPECT_EQ(a.grad.to_vector(), (std::vector<float>{3.0f, 0.0f}));
  // Above the limit: scaled by max_norm / (total + 1e-6), as torch does.
  EXPECT_NEAR(clip_grad_norm({&a, &b}, 1.0), 5.0, 1e-12);
  const double coef = 1.0 / (5.0 + 1e-6);
  EXPECT_NEAR(a.grad.f32()[0], 3.0 * coef, 1e-7);
  EXPECT_NEAR(b.grad.f32()[0], 4.0 * coef, 1e-7);
  EXPECT_NEAR(clip_grad_norm({&a, &b}, 1.0), 5.0 * coef, 1e-6);
  EXPECT_THROW(clip_grad_norm({&a}, 0.0), Error);
}

TEST(LrSchedule, Constant) {
  LrSchedule s = LrSchedule::constant(0.1f);
  EXPECT_EQ(s.kind(), LrSchedule::Kind::constant);
  EXPECT_FLOAT_EQ(s.lr(0), 0.1f);
  EXPECT_FLOAT_EQ(s.lr(123456), 0.1f);
  EXPECT_THROW(LrSchedule::constant(-0.1f), Error);
  // With a warm-up (it was ignored: --warmup-steps with --lr-schedule constant did nothing).
  LrSchedule w = LrSchedule::constant(0.2f, 4);
  EXPECT_FLOAT_EQ(w.lr(0), 0.05f);
  EXPECT_FLOAT_EQ(w.lr(2), 0.15f);
  EXPECT_FLOAT_EQ(w.lr(3), 0.2f);
  EXPECT_FLOAT_EQ(w.lr(100000), 0.2f);
  EXPECT_EQ(w.describe(), "constant(lr=0.2, warmup_steps=4)");
  EXPECT_THROW(LrSchedule::constant(0.1f, -1), Error);
}

TEST(LrSchedule, CosineWithWarmupAtKeySteps) {
  LrSchedule s = LrSchedule::cosine(1.0f, 4, 12, 0.1f);
  EXPECT_FLOAT_EQ(s.lr(0), 0.25f);  // base_lr / warmup_steps
  EXPECT_FLOAT_EQ(s.lr(1), 0.5f);
  EXPECT_FLOAT_EQ(s.lr(3), 1.0f);  // warmup reaches base_lr
  EXPECT_FLOAT_EQ(s.lr(4), 1.0f);  // cosine starts at base_lr
  EXPECT_FLOAT_EQ(s.lr(6), float(0.1 + 0.45 * (1 + std::cos(M_PI * 0.25))));
  EXPECT_FLOAT_EQ(s.lr(8), 0.55f);  // half-way: (base + min) / 2
  EXPECT_FLOAT_EQ(s.lr(12), 0.1f);
  EXPECT_FLOAT_EQ(s.lr(1000), 0.1f);  // clamped after total_steps
  for (int64_t t = 4; t < 12; ++t) EXPECT_GE(s.lr(t), s.lr(t + 1)) << t;
  EXPECT_THROW(s.lr(-1), Error);

  LrSchedule no_warmup = LrSchedule::cosine(0.5f, 0, 10);
  EXPECT_FLOAT_EQ(no_warmup.lr(0), 0.5f);
  EXPECT_FLOAT_EQ(no_warmup.lr(10), 0.0f);
  LrSchedule all_warmup = LrSchedule::cosine(0.5f, 5, 5);
  EXPECT_FLOAT_EQ(all_warmup.lr(4), 0.5f);
  EXPECT_FLOAT_EQ(all_warmup.lr(5), 0.0f);
}

TEST(LrSchedule, Validation) {
  EXPECT_THROW(LrSchedule::cosine(-1.0f, 0, 10), Error);
  EXPECT_THROW(LrSchedule::cosine(1.0f, 11, 10), Error);  // warmup > total
  EXPECT_THROW(LrSchedule::cosine(1.0f, -1, 10), Error);
  EXPECT_THROW(LrSchedule::cosine(1.0f, 0, 0), Error);
  EXPECT_THROW(LrSchedule::cosine(1.0f, 0, 10, 2.0f), Error);  // min_lr > base_lr
  EXPECT_THROW(LrSchedule::cosine(1.0f, 0, 10, -0.1f), Error);
}

// --epochs x steps per epoch, cut to --steps. The product wrapped around: --epochs
// 1844674407370955162 on 10 steps per epoch trained 4 steps, with exit 0.
TEST(RunTotalSteps, EpochsTimesStepsIsCheckedNotWrapped) {
  TrainConfig c;
  c.epochs = 3;
  EXPECT_EQ(run_total_steps(c, 10), 30u);
  c.max_steps = 25;
  EXPECT_EQ(run_total_steps(c, 10), 25u);  // whichever comes first
  c.max_steps = 200;
  EXPECT_EQ(run_total_steps(c, 10), 30u);
  c.epochs = 0;  // --steps alone: no epoch limit
  EXPECT_EQ(run_total_steps(c, 10), 200u);
  c.epochs = 1844674407370955162ull;
  EXPECT_EQ(run_total_steps(c, 10), 200u);  // the epochs are past any --steps
  c.max_steps = 0;
  EXPECT_MENTIONS(dp::test::error_of([&] { run_total_steps(c, 10); }),
                  "--epochs 1844674407370955162 x 10 steps per epoch is more than "
                  "9223372036854775807 steps");
  c.epochs = 922337203685477580ull;  // x 10 fits in int64_t
  EXPECT_EQ(run_total_steps(c, 10), 9223372036854775800ull);
  c.epochs = 0;
  c.max_steps = uint64_t(INT64_MAX) + 1;
  EXPECT_MENTIONS(dp::test::error_of([&] { run_total_steps(c, 10); }), "--steps must be at most");
}

// A warm-up longer than the run is refused naming --warmup-steps (the launcher adds the config
// file's line), not LrSchedule's "warmup_steps 10 must be in [0, total_steps = 5]".
TEST(MakeSchedule, AWarmupLongerThanTheRunNamesTheOption) {
  TrainConfig c;
  c.epochs = 0;
  c.max_steps = 5;
  c.warmup_steps = 10;
  EXPECT_MENTIONS(dp::test::error_of([&] { make_schedule(c, 10); }),
                  "--warmup-steps 10 is longer than the run's 5 steps (--steps 5)");
  c.epochs = 2;
  c.max_steps = 0;
  c.warmup_steps = 21;
  EXPECT_MENTIONS(dp::test::error_of([&] { make_schedule(c, 10); }),
                  "--warmup-steps 21 is longer than the run's 20 steps (--epochs 2 x 10 steps per "
                  "epoch)");
  c.warmup_steps = 20;
  EXPECT_EQ(make_schedule(c, 10)->describe(),
            "cosine(base_lr=0.05, warmup_steps=20, total_steps=20, min_lr=0)");
  c.lr_schedule = "constant";  // a constant rate warms up past the end as asked
  c.warmup_steps = 21;
  EXPECT_NO_THROW(make_schedule(c, 10));
}
