#include "runtime/optim/adamw.h"

#include <cmath>

#include <fmt/format.h>

#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/device_ops.h"

namespace dp {

AdamW::AdamW(std::vector<Parameter*> params, float beta1, float beta2, float eps,
             float weight_decay)
    : Optimizer(std::move(params)),
      beta1_(beta1),
      beta2_(beta2),
      eps_(eps),
      weight_decay_(weight_decay) {
  DP_CHECK(beta1 >= 0.0f && beta1 < 1.0f, "AdamW: beta1 {} must be in [0, 1)", beta1);
  DP_CHECK(beta2 >= 0.0f && beta2 < 1.0f, "AdamW: beta2 {} must be in [0, 1)", beta2);
  DP_CHECK(std::isfinite(eps) && eps >= 0.0f, "AdamW: eps {} must be >= 0", eps);
  DP_CHECK(std::isfinite(weight_decay) && weight_decay >= 0.0f,
           "AdamW: weight_decay {} must be >= 0", weight_decay);
  exp_avg_.reserve(params_.size());
  exp_avg_sq_.reserve(params_.size());
  for (Parameter* p : params_) {
    exp_avg_.push_back(Tensor::zeros(p->value.shape(), DType::f32, device_));
    exp_avg_sq_.push_back(Tensor::zeros(p->value.shape(), DType::f32, device_));
  }
}

void AdamW::step(float lr) {
  check_lr(lr);
  check_devices();
  const double t = static_cast<double>(steps_ + 1);
  // In double: 1 - 0.999^t loses most of its digits in float for small t.
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1_), t);
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2_), t);
  for (size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = *params_[i];
    if (device_.is_cuda()) {
      gpu::adamw_update(device_.index, p.value.numel(), lr, beta1_, beta2_, eps_, weight_decay_,
                        bc1, bc2, p.value.f32(), p.grad.f32(), exp_avg_[i].f32(),
                        exp_avg_sq_[i].f32());
      continue;
    }
    adamw_update(p.value.numel(), lr, beta1_, beta2_, eps_, weight_decay_, bc1, bc2, p.value.f32(),
                 p.grad.f32(), exp_avg_[i].f32(), exp_avg_sq_[i].f32());
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
  return fmt::format("AdamW(beta1={}, beta2={}, eps={}, weight_decay={}, params={})", beta1_,
                     beta2_, eps_, weight_decay_, params_.size());
}

}  // namespace dp
