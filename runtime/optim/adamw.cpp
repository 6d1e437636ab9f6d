#include "runtime/optim/adamw.h"

#include <cmath>

#include <fmt/format.h>

#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/device_ops.h"

namespace dp {

AdamW::AdamW(std::vector<Parameter*> params, float beta1, float beta2, float eps,
             float weight_decay, ParameterArena* arena)
    : Optimizer(std::move(params), arena),
      beta1_(beta1),
      beta2_(beta2),
      eps_(eps),
      weight_decay_(weight_decay) {
  DP_CHECK(beta1 >= 0.0f && beta1 < 1.0f, "AdamW: beta1 {} must be in [0, 1)", beta1);
  DP_CHECK(beta2 >= 0.0f && beta2 < 1.0f, "AdamW: beta2 {} must be in [0, 1)", beta2);
  DP_CHECK(std::isfinite(eps) && eps >= 0.0f, "AdamW: eps {} must be >= 0", eps);
  DP_CHECK(std::isfinite(weight_decay) && weight_decay >= 0.0f,
           "AdamW: weight_decay {} must be >= 0", weight_decay);
  exp_avg_ = make_state(&exp_avg_block_);
  exp_avg_sq_ = make_state(&exp_avg_sq_block_);
}

void AdamW::update(size_t n, float lr, bool decay, double bc1, double bc2, float* param,
                   const float* grad, float* m, float* v) {
  const float wd = decay ? weight_decay_ : 0.0f;
  if (device_.is_cuda()) {
    gpu::adamw_update(device_.index, n, lr, beta1_, beta2_, eps_, wd, bc1, bc2, param, grad, m, v);
    return;
  }
  adamw_update(n, lr, beta1_, beta2_, eps_, wd, bc1, bc2, param, grad, m, v);
}

void AdamW::step(float lr) {
  check_lr(lr);
  check_devices();
  const double t = static_cast<double>(steps_ + 1);
  // In double: 1 - 0.999^t loses most of its digits in float for small t.
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1_), t);
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2_), t);
  if (fused()) {
    // The padding is zero in all four blocks: m = v = 0 and p = 0 * decay - s * (0 / eps).
    for (const FusedRange& r : fused_ranges())
      update(r.n, lr, r.decay, bc1, bc2, arena_->values().f32() + r.offset,
             arena_->grads().f32() + r.offset, exp_avg_block_.f32() + r.offset,
             exp_avg_sq_block_.f32() + r.offset);
  } else {
    for (size_t i = 0; i < params_.size(); ++i) {
      Parameter& p = *params_[i];
      update(p.value.numel(), lr, decays(i), bc1, bc2, p.value.f32(), p.grad.f32(),
             exp_avg_[i].f32(), exp_avg_sq_[i].f32());
    }
  }
  ++steps_;
}

std::vector<std::pair<std::string, Tensor*>> AdamW::state_tensors() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(params_[i]->name + ".exp_avg", &exp_avg_[i]);
    out.emplace_back(params_[i]->name + ".exp_avg_sq", &exp_avg_sq_[i]);
  }
  return out;
}

std::string AdamW::describe() const {
  return fmt::format("AdamW(beta1={}, beta2={}, eps={}, weight_decay={}{}, params={})", beta1_,
                     beta2_, eps_, weight_decay_, decay_note(), params_.size());
}

}  // namespace dp
