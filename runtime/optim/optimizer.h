#pragma once
#include <string>
#include <utility>
#include <vector>

#include "runtime/nn/parameter.h"
#include "runtime/nn/parameter_arena.h"

namespace dp {

// Updates parameters in place from their gradients. Under DDP every rank holds the same
// averaged gradients and runs the same update, so the replicas stay bitwise identical
// without any communication here. State is allocated at construction, on the parameters'
// device: step() allocates nothing. All parameters of one optimizer (values and gradients)
// must be on one device; on a GPU, step() dispatches to the fused CUDA updates and only
// enqueues them on that device's compute stream.
//
// With a ParameterArena over exactly these parameters (same list, same order), the state is
// laid out like the arena (one block per slot, per-parameter views into it) and step(),
// zero_grad() run as ONE pass over the blocks while the arena is intact (every value and
// gradient still its view): the same float operations per element as the per-parameter path,
// so the results are bit-identical, with one loop / one kernel launch instead of one per
// parameter. The padding between parameters is zero in every block and each update maps
// zeros to zeros. Every parameter gets the same hyperparameters but one: weight decay may be
// switched off per parameter (set_weight_decay_mask(), llm.c's and nanoGPT's "decay only the
// 2-D tensors"); the fused pass then runs once per stretch of neighbouring parameters that
// agree (a handful of launches for a GPT), each a contiguous range of the blocks.
class Optimizer {
 public:
  explicit Optimizer(std::vector<Parameter*> params, ParameterArena* arena = nullptr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update with learning rate `lr` (from an LrSchedule; must be finite and >= 0).
  virtual void step(float lr) = 0;
  virtual std::string describe() const;

  // Clears every gradient (grad = 0): call once per accumulation cycle, since layers add.
  // One memset of the gradient block when the arena's gradients are intact.
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
  // Which parameters weight decay applies to, in params() order (all of them by default).
  // Only the decay changes: a parameter left out is updated as with weight_decay 0.
  void set_weight_decay_mask(std::vector<bool> decays);
  bool decays(size_t i) const { return decays_.at(i); }
  size_t decayed_count() const;
  // Where the parameters (and the optimizer's state) are.
  Device device() const { return device_; }
  // The arena the state is laid out like (null without one), and whether the next step()
  // runs as one pass over it.
  const ParameterArena* arena() const { return arena_; }
  virtual bool fused() const { return arena_ != nullptr && arena_->intact(); }

 protected:
  void check_lr(float lr) const;
  // The parameters must still be where they were at construction (the state is there): a
  // model moved after its optimizer was built is a dp::Error, not a crash.
  void check_devices() const;
  // One optimizer state slot, zero: with an arena a block laid out like it (stored in
  // `block`) and its per-parameter views, else one tensor per parameter.
  std::vector<Tensor> make_state(Tensor* block) const;
  // The fused pass's pieces: ranges [offset, offset + n) of the arena's blocks over
  // neighbouring parameters with the same decay. One range covering the whole block (padding
  // included) when every parameter decays alike. Built when the mask is set, not per step.
  struct FusedRange {
    size_t offset = 0;
    size_t n = 0;
    bool decay = true;
  };
  const std::vector<FusedRange>& fused_ranges() const { return fused_ranges_; }
  // describe()'s note on the mask ("" when every parameter decays).
  std::string decay_note() const;

  std::vector<Parameter*> params_;
  int64_t steps_ = 0;
  Device device_;
  ParameterArena* arena_ = nullptr;
  std::vector<bool> decays_;              // per parameter, params() order
  std::vector<FusedRange> fused_ranges_;  // empty without an arena

 private:
  void build_fused_ranges();
};

}  // namespace dp
