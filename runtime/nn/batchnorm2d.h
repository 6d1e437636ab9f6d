#pragma once
#include <cstddef>
#include <functional>
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
//
// Synchronised (torch.nn.SyncBatchNorm, --sync-batchnorm): with a `StatsAllreduce` set, the
// training statistics are those of the GLOBAL batch (every rank's samples), and backward
// sums its per-channel terms over the ranks too, so N ranks x batch B compute what one rank
// computes with batch N x B. Costs two small all-reduces per forward and one per backward.
//
// relu: the layer is BatchNorm2d followed by torch.nn.ReLU, y = max(bn(x), 0), with the same
// parameters, buffers and state as without it. On the CPU the ReLU runs inside the
// normalisation's pass and its backward inside BatchNorm's (dy counts where the normalised
// value, recomputed from the input with the forward's arithmetic, is > 0): two passes over
// the activations and a gradient buffer fewer than a separate ReLU layer, and the output is
// not read again.
class BatchNorm2d : public Module {
 public:
  // Sums a small float32 host tensor over every rank, in place (a blocking collective: every
  // rank's BatchNorm layers call it in the same order).
  using StatsAllreduce = std::function<void(Tensor& host)>;

  BatchNorm2d(std::string name, size_t channels, float eps = 1e-5f, float momentum = 0.1f,
              bool relu = false);

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
  bool relu() const { return relu_; }
  void set_sync(StatsAllreduce allreduce) { sync_ = std::move(allreduce); }
  bool synchronised() const { return static_cast<bool>(sync_); }

 private:
  size_t channels_;
  float eps_, momentum_;
  bool relu_;
  Parameter weight_, bias_;
  Buffer running_mean_, running_var_, num_batches_tracked_;

  bool batch_stats_ = true;  // whether the last forward normalised with the batch's statistics
  Tensor input_;             // handle to the last forward's input (no copy)
  Tensor output_, grad_input_, no_grad_;
  Tensor relu_grad_;      // CUDA with relu: dy through the ReLU (the fused kernels are CPU only)
  Tensor mean_, invstd_;  // float32 [C]: the statistics the last forward used
  Tensor sum_dy_, sum_dy_xhat_;  // float32 [C]: backward's per-channel sums
  StatsAllreduce sync_;
  // Host float32: the sums that travel between ranks (forward's statistics, backward's).
  Tensor sync_stats_, sync_grads_;
  double global_count_ = 0;            // values per channel over all ranks, of the last forward
  Tensor global_dy_, global_dy_xhat_;  // float32 [C]: backward's sums over the ranks, rescaled

  void global_batch_stats(const Tensor& x);
};

// Makes every BatchNorm2d under `root` synchronised through `allreduce`; returns how many.
size_t enable_sync_batchnorm(Module& root, const BatchNorm2d::StatsAllreduce& allreduce);

// How many BatchNorm2d there are under `root` (synchronised or not).
size_t count_batchnorm(const Module& root);

}  // namespace dp
