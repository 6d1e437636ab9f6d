#pragma once
#include <cstddef>
#include <string>

#include "runtime/nn/module.h"

namespace dp {

// torch.nn.BatchNorm2d(channels, eps, momentum) on x [B, C, H, W], per channel over the batch
// and the plane. Parameters "<name>.weight" (ones) and "<name>.bias" (zeros); buffers
// "<name>.running_mean" (zeros), "<name>.running_var" (ones) and "<name>.num_batches_tracked"
// (a float32 scalar counting training forwards: PyTorch's int64 counter, kept for state
// parity and unused by the arithmetic since momentum is always given; float32 like every
// buffer, so that DDP's buffer broadcast and the parameter dump take it as they are; exact
// up to 2^24 steps).
//
// training(): normalises with the batch's mean and biased variance, and moves the running
// statistics towards the batch's mean and UNBIASED variance by `momentum`; backward goes
// through the batch statistics. Evaluation: normalises with the running statistics and
// writes nothing. Computes in its input's dtype (float32 or bfloat16 activations); the
// statistics, parameters and gradients are float32.
class BatchNorm2d : public Module {
 public:
  BatchNorm2d(std::string name, size_t channels, float eps = 1e-5f, float momentum = 0.1f);

  const Tensor& forward(const Tensor& x) override;
  // Accumulates dweight and dbias, signals them ready, then computes dx.
  const Tensor& backward(const Tensor& grad_output) override;

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  Buffer& running_mean() { return running_mean_; }
  Buffer& running_var() { return running_var_; }
  Buffer& num_batches_tracked() { return num_batches_tracked_; }
  size_t channels() const { return channels_; }
  float eps() const { return eps_; }
  float momentum() const { return momentum_; }

 private:
  size_t channels_;
  float eps_, momentum_;
  Parameter weight_, bias_;
  Buffer running_mean_, running_var_, num_batches_tracked_;

  bool batch_stats_ = true;  // whether the last forward normalised with the batch's statistics
  Tensor input_;             // handle to the last forward's input (no copy)
  Tensor output_, grad_input_, no_grad_;
  Tensor mean_, invstd_;         // float32 [C]: the statistics the last forward used
  Tensor sum_dy_, sum_dy_xhat_;  // float32 [C]: backward's per-channel sums
};

}  // namespace dp
