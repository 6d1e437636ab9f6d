#include "runtime/optim/lr_schedule.h"

#include <cmath>

#include <fmt/format.h>

#include "runtime/core/error.h"

namespace dp {

LrSchedule LrSchedule::constant(float lr, int64_t warmup_steps) {
  DP_CHECK(std::isfinite(lr) && lr >= 0.0f, "lr schedule: learning rate {} must be >= 0", lr);
  DP_CHECK(warmup_steps >= 0, "lr schedule: warmup_steps {} must be >= 0", warmup_steps);
  LrSchedule s;
  s.kind_ = Kind::constant;
  s.base_lr_ = lr;
  s.min_lr_ = lr;
  s.warmup_ = warmup_steps;
  return s;
}

LrSchedule LrSchedule::cosine(float base_lr, int64_t warmup_steps, int64_t total_steps,
                              float min_lr) {
  DP_CHECK(std::isfinite(base_lr) && base_lr >= 0.0f,
           "lr schedule: base learning rate {} must be >= 0", base_lr);
  DP_CHECK(std::isfinite(min_lr) && min_lr >= 0.0f && min_lr <= base_lr,
           "lr schedule: min_lr {} must be in [0, base_lr = {}]", min_lr, base_lr);
  DP_CHECK(total_steps > 0, "lr schedule: total_steps {} must be > 0", total_steps);
  DP_CHECK(warmup_steps >= 0 && warmup_steps <= total_steps,
           "lr schedule: warmup_steps {} must be in [0, total_steps = {}]", warmup_steps,
           total_steps);
  LrSchedule s;
  s.kind_ = Kind::cosine;
  s.base_lr_ = base_lr;
  s.min_lr_ = min_lr;
  s.warmup_ = warmup_steps;
  s.total_ = total_steps;
  return s;
}

float LrSchedule::lr(int64_t step) const {
  DP_CHECK(step >= 0, "lr schedule: step {} is negative", step);
  if (step < warmup_)
    return static_cast<float>(double(base_lr_) * double(step + 1) / double(warmup_));
  if (kind_ == Kind::constant) return base_lr_;
  if (step >= total_) return min_lr_;
  const double progress = double(step - warmup_) / double(total_ - warmup_);
  const double pi = 3.14159265358979323846;
  return static_cast<float>(double(min_lr_) + 0.5 * (double(base_lr_) - double(min_lr_)) *
                                                  (1.0 + std::cos(pi * progress)));
}

std::string LrSchedule::describe() const {
  if (kind_ == Kind::constant)
    return warmup_ > 0 ? fmt::format("constant(lr={}, warmup_steps={})", base_lr_, warmup_)
                       : fmt::format("constant(lr={})", base_lr_);
  return fmt::format("cosine(base_lr={}, warmup_steps={}, total_steps={}, min_lr={})", base_lr_,
                     warmup_, total_, min_lr_);
}

}  // namespace dp
