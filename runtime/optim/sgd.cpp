#include "runtime/optim/sgd.h"

#include <cmath>

#include <fmt/format.h>

#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/device_ops.h"

namespace dp {

SGD::SGD(std::vector<Parameter*> params, float momentum, float dampening, float weight_decay,
         bool nesterov, ParameterArena* arena)
    : Optimizer(std::move(params), arena),
      momentum_(momentum),
      dampening_(dampening),
      weight_decay_(weight_decay),
      nesterov_(nesterov) {
  DP_CHECK(std::isfinite(momentum) && momentum >= 0.0f, "SGD: momentum {} must be >= 0", momentum);
  DP_CHECK(std::isfinite(dampening), "SGD: dampening {} must be finite", dampening);
  DP_CHECK(std::isfinite(weight_decay) && weight_decay >= 0.0f, "SGD: weight_decay {} must be >= 0",
           weight_decay);
  DP_CHECK(!nesterov || (momentum > 0.0f && dampening == 0.0f),
           "SGD: nesterov needs momentum > 0 and dampening == 0 (got momentum={}, dampening={})",
           momentum, dampening);
  if (momentum_ != 0.0f) momentum_buf_ = make_state(&momentum_block_);
}

void SGD::update(size_t n, float lr, bool decay, bool first, float* param, const float* grad,
                 float* buf) {
  const float wd = decay ? weight_decay_ : 0.0f;
  if (device_.is_cuda()) {
    gpu::sgd_update(device_.index, n, lr, momentum_, dampening_, wd, nesterov_, first, param, grad,
                    buf);
    return;
  }
  sgd_update(n, lr, momentum_, dampening_, wd, nesterov_, first, param, grad, buf);
}

void SGD::step(float lr) {
  check_lr(lr);
  check_devices();
  const bool first = steps_ == 0;
  if (fused()) {
    // The padding is zero in all three blocks: d = 0 + wd * 0 = 0, buf = 0, p = 0 - lr * 0.
    for (const FusedRange& r : fused_ranges())
      update(r.n, lr, r.decay, first, arena_->values().f32() + r.offset,
             arena_->grads().f32() + r.offset,
             momentum_buf_.empty() ? nullptr : momentum_block_.f32() + r.offset);
  } else {
    for (size_t i = 0; i < params_.size(); ++i) {
      Parameter& p = *params_[i];
      update(p.value.numel(), lr, decays(i), first, p.value.f32(), p.grad.f32(),
             momentum_buf_.empty() ? nullptr : momentum_buf_[i].f32());
    }
  }
  ++steps_;
}

std::vector<std::pair<std::string, Tensor*>> SGD::state_tensors() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (size_t i = 0; i < momentum_buf_.size(); ++i)
    out.emplace_back(params_[i]->name + ".momentum_buffer", &momentum_buf_[i]);
  return out;
}

std::string SGD::describe() const {
  return fmt::format("SGD(momentum={}, dampening={}, weight_decay={}{}, nesterov={}, params={})",
                     momentum_, dampening_, weight_decay_, decay_note(), nesterov_, params_.size());
}

}  // namespace dp
