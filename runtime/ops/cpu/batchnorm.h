#pragma once
// Batch normalisation over the channels of a [batch, channels, plane] tensor (NCHW with H*W
// flattened) on the CPU, torch.nn.BatchNorm2d's arithmetic. Activations are T (float or
// bf16); statistics, parameters and their gradients are float32, sums are formed in double.
#include <cstdint>

namespace dp {

// mean[c] and var[c] (biased: divided by batch * plane) of x over the batch and the plane.
template <typename T>
void batchnorm_batch_stats(int64_t batch, int64_t channels, int64_t plane, const T* x, float* mean,
                           float* var);

// y = (x - mean[c]) * invstd[c] * weight[c] + bias[c]; with relu, max(that, 0) (a NaN
// becomes 0), so that a following ReLU costs no pass of its own.
template <typename T>
void batchnorm_apply(int64_t batch, int64_t channels, int64_t plane, const T* x, const float* mean,
                     const float* invstd, const float* weight, const float* bias, bool relu, T* y);

// sum_dy[c] = sum of dy, sum_dy_xhat[c] = sum of dy * (x - mean) * invstd (the bias and weight
// gradients), both overwritten. relu_y (or null): the output of a fused ReLU
// (batchnorm_apply with relu); dy is then the gradient of that output, and is taken as 0
// where relu_y is 0 (the ReLU's backward, without a buffer of its own).
template <typename T>
void batchnorm_backward_sums(int64_t batch, int64_t channels, int64_t plane, const T* x,
                             const T* dy, const T* relu_y, const float* mean, const float* invstd,
                             float* sum_dy, float* sum_dy_xhat);

// dx from dy. With batch statistics (training) the gradient flows through the mean and the
// variance as well:
//   dx = weight * invstd * (dy - sum_dy / n - xhat * sum_dy_xhat / n),  n = batch * plane;
// with fixed (running) statistics it is weight * invstd * dy. relu_y as for the sums.
template <typename T>
void batchnorm_backward_input(int64_t batch, int64_t channels, int64_t plane, const T* x,
                              const T* dy, const T* relu_y, const float* mean, const float* invstd,
                              const float* weight, const float* sum_dy, const float* sum_dy_xhat,
                              bool batch_stats, T* dx);

}  // namespace dp
