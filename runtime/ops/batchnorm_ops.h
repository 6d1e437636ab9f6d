#pragma once
// Tensor-level batch normalisation over dimension 1 of x [B, C, ...] (torch.nn.BatchNorm2d's
// arithmetic), picking the kernel by device and dtype. Activations (x, y, dy, dx) are float32
// or bfloat16; statistics, weight, bias and their gradients are float32 [C].
#include "runtime/core/tensor.h"

namespace dp::ops {

// mean and invstd = 1 / sqrt(var + eps) of the batch, with the biased variance (divided by
// n = B * H * W). When running_mean is not null: running_mean and running_var move towards
// the batch's mean and UNBIASED variance by `momentum`, and num_batches_tracked (float32, one
// element; may be null) counts the update, as PyTorch does in training.
void batchnorm_batch_stats(const Tensor& x, float eps, Tensor& mean, Tensor& invstd,
                           Tensor* running_mean, Tensor* running_var, Tensor* num_batches_tracked,
                           float momentum);

// mean = running_mean, invstd = 1 / sqrt(running_var + eps): evaluation.
void batchnorm_running_stats(const Tensor& running_mean, const Tensor& running_var, float eps,
                             Tensor& mean, Tensor& invstd);

// y = (x - mean) * invstd * weight + bias, per channel; with relu, max(that, 0) in the same
// pass (CPU only: a CUDA caller applies ops::relu_forward after).
void batchnorm_apply(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                     const Tensor& weight, const Tensor& bias, Tensor& y, bool relu = false);

// The ReLU of a batchnorm_apply with relu: the weight and bias that forward used. dy is then
// the gradient of the ReLU's output, and counts only where the normalised value was > 0,
// which the backward recomputes from x (CPU only: a CUDA caller runs ops::relu_backward on dy
// first).
struct FusedReLU {
  const Tensor& weight;
  const Tensor& bias;
};

// sum_dy = sum of dy and sum_dy_xhat = sum of dy * xhat per channel (overwritten); then
// dweight += sum_dy_xhat and dbias += sum_dy. relu: see FusedReLU (or null).
void batchnorm_backward_params(const Tensor& x, const Tensor& dy, const Tensor& mean,
                               const Tensor& invstd, Tensor& sum_dy, Tensor& sum_dy_xhat,
                               Tensor& dweight, Tensor& dbias, const FusedReLU* relu = nullptr);

// dx from dy and the sums of batchnorm_backward_params; through the batch statistics when
// batch_stats (training), else with the statistics held fixed. relu: see FusedReLU (its
// weight is `weight`).
void batchnorm_backward_input(const Tensor& x, const Tensor& dy, const Tensor& mean,
                              const Tensor& invstd, const Tensor& weight, const Tensor& sum_dy,
                              const Tensor& sum_dy_xhat, bool batch_stats, Tensor& dx,
                              const FusedReLU* relu = nullptr);

}  // namespace dp::ops
