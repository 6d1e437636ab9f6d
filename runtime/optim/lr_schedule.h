#pragma once
#include <cstdint>
#include <string>

namespace dp {

// The learning rate as a pure function of the (0-based) optimizer step, so that a resumed
// run gets the same rate from the step counter alone.
class LrSchedule {
 public:
  enum class Kind { constant, cosine };

  // lr(step) = lr, after the same linear warmup as cosine's when warmup_steps > 0
  // (Hugging Face's constant_with_warmup).
  static LrSchedule constant(float lr, int64_t warmup_steps = 0);
  // Linear warmup, lr(s) = base_lr * (s + 1) / warmup_steps for s < warmup_steps (the last
  // warmup step reaches base_lr), then cosine decay from base_lr at s = warmup_steps to
  // min_lr at s = total_steps, and min_lr after that.
  static LrSchedule cosine(float base_lr, int64_t warmup_steps, int64_t total_steps,
                           float min_lr = 0.0f);

  float lr(int64_t step) const;
  Kind kind() const { return kind_; }
  std::string describe() const;

 private:
  LrSchedule() = default;

  Kind kind_ = Kind::constant;
  float base_lr_ = 0.0f;
  float min_lr_ = 0.0f;
  int64_t warmup_ = 0;
  int64_t total_ = 0;
};

}  // namespace dp
