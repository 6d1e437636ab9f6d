#pragma once
#include <string>
#include <utility>
#include <vector>

#include "runtime/nn/parameter.h"

namespace dp {

// Updates parameters in place from their gradients. Under DDP every rank holds the same
// averaged gradients and runs the same update, so the replicas stay bitwise identical
// without any communication here. State is allocated at construction, on the parameters'
// device: step() allocates nothing. All parameters of one optimizer (values and gradients)
// must be on one device; on a GPU, step() dispatches to the fused CUDA updates and only
// enqueues them on that device's compute stream.
class Optimizer {
 public:
  explicit Optimizer(std::vector<Parameter*> params);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update with learning rate `lr` (from an LrSchedule; must be finite and >= 0).
  virtual void step(float lr) = 0;
  virtual std::string describe() const;

  // Clears every gradient (grad = 0): call once per accumulation cycle, since layers add.
  void zero_grad();
  const std::vector<Parameter*>& params() const { return params_; }
  // Number of step() calls so far.
  int64_t steps() const { return steps_; }

  // For checkpoints: the optimizer's name ("sgd", "adamw"), its state tensors (on device(),
  // named "<parameter>.<slot>" as torch's state_dict names them: momentum_buffer, exp_avg,
  // exp_avg_sq), and the step count, which AdamW's bias correction and SGD's first-step
  // momentum depend on. Restoring both makes the next step() what it would have been.
  virtual const char* kind() const = 0;
  virtual std::vector<std::pair<std::string, Tensor*>> state_tensors() { return {}; }
  void set_steps(int64_t steps);
  // Where the parameters (and the optimizer's state) are.
  Device device() const { return device_; }

 protected:
  void check_lr(float lr) const;
  // The parameters must still be where they were at construction (the state is there): a
  // model moved after its optimizer was built is a dp::Error, not a crash.
  void check_devices() const;

  std::vector<Parameter*> params_;
  int64_t steps_ = 0;
  Device device_;
};

}  // namespace dp
