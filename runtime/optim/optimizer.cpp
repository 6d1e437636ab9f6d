#include "runtime/optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include <fmt/format.h>

namespace dp {

Optimizer::Optimizer(std::vector<Parameter*> params, ParameterArena* arena)
    : params_(std::move(params)), arena_(arena) {
  std::unordered_set<const Parameter*> seen;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Parameter* p = params_[i];
    DP_CHECK(p != nullptr, "optimizer: parameter {} of {} is null", i, params_.size());
    // A parameter listed twice would be updated twice per step.
    DP_CHECK(seen.insert(p).second, "optimizer: parameter '{}' is listed twice", p->name);
    DP_CHECK(p->value.dtype() == DType::f32 && p->grad.dtype() == DType::f32 &&
                 p->grad.numel() == p->value.numel(),
             "optimizer: parameter '{}' has value {} but gradient {}", p->name, p->value.str(),
             p->grad.str());
  }
  decays_.assign(params_.size(), true);
  if (!params_.empty()) device_ = params_.front()->value.device();
  check_devices();
  DP_CHECK(arena_ == nullptr || arena_->covers(params_),
           "optimizer: the parameter arena holds {} parameters, not the optimizer's {} in the "
           "same order",
           arena_ ? arena_->params().size() : 0, params_.size());
  build_fused_ranges();
}

std::vector<Tensor> Optimizer::make_state(Tensor* block) const {
  if (arena_ != nullptr) {
    *block = arena_->zeros_like_block();
    return arena_->views_of(*block);
  }
  std::vector<Tensor> out;
  out.reserve(params_.size());
  for (const Parameter* p : params_)
    out.push_back(Tensor::zeros(p->value.shape(), DType::f32, device_));
  return out;
}

void Optimizer::check_devices() const {
  for (const Parameter* p : params_)
    DP_CHECK(p->value.device() == device_ && p->grad.device() == device_,
             "optimizer: parameter '{}' is on {} (its gradient on {}) but the optimizer's "
             "parameters and state are on {}; all parameters of one optimizer must be on one "
             "device, and the model must be moved before the optimizer is built",
             p->name, p->value.device().str(), p->grad.device().str(), device_.str());
}

std::string Optimizer::describe() const {
  return fmt::format("Optimizer(params={})", params_.size());
}

void Optimizer::zero_grad() {
  if (arena_ != nullptr && arena_->grads_intact()) {
    arena_->grads().zero_();  // the padding is zero already: one memset clears it all
    return;
  }
  for (Parameter* p : params_) p->grad.zero_();
}

void Optimizer::set_weight_decay_mask(std::vector<bool> decays) {
  DP_CHECK(decays.size() == params_.size(),
           "optimizer: the weight decay mask has {} entries for {} parameters", decays.size(),
           params_.size());
  decays_ = std::move(decays);
  build_fused_ranges();
}

size_t Optimizer::decayed_count() const {
  return static_cast<size_t>(std::count(decays_.begin(), decays_.end(), true));
}

void Optimizer::build_fused_ranges() {
  fused_ranges_.clear();
  if (arena_ == nullptr) return;
  const size_t decayed = decayed_count();
  if (decayed == 0 || decayed == params_.size()) {
    fused_ranges_.push_back({0, arena_->numel(), decayed > 0});
    return;
  }
  // Neighbours that agree share a range; the padding inside a range is zero and every update
  // keeps it zero whatever its decay, and the padding between ranges is left untouched.
  for (size_t i = 0; i < params_.size(); ++i) {
    const size_t begin = arena_->offset(i);
    const size_t end = begin + params_[i]->value.numel();
    if (!fused_ranges_.empty() && fused_ranges_.back().decay == decays_[i])
      fused_ranges_.back().n = end - fused_ranges_.back().offset;
    else
      fused_ranges_.push_back({begin, end - begin, decays_[i]});
  }
}

std::string Optimizer::decay_note() const {
  const size_t kept = params_.size() - decayed_count();
  return kept == 0 ? "" : fmt::format(", no decay on {} of {} parameters", kept, params_.size());
}

void Optimizer::set_steps(int64_t steps) {
  DP_CHECK(steps >= 0, "{}: step count {} is negative", describe(), steps);
  steps_ = steps;
}

void Optimizer::check_lr(float lr) const {
  DP_CHECK(std::isfinite(lr) && lr >= 0.0f,
           "{}: learning rate {} is invalid (must be finite and >= 0)", describe(), lr);
}

}  // namespace dp
