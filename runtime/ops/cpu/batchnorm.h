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

// y = (x - mean[c]) * invstd[c] * weight[c] + bias[c]; with relu, the ReLU of that (a NaN
// stays NaN, as in torch.relu), so that a following ReLU costs no pass of its own.
template <typename T>
void batchnorm_apply(int64_t batch, int64_t channels, int64_t plane, const T* x, const float* mean,
                     const float* invstd, const float* weight, const float* bias, bool relu, T* y);

// sum_dy[c] = sum of dy, sum_dy_xhat[c] = sum of dy * (x - mean) * invstd (the bias and weight
// gradients), both overwritten. relu_weight and relu_bias (both or neither): the forward was
// batchnorm_apply with relu and these parameters, dy is the gradient of its output, and counts
// only where the normalised value was > 0 (the ReLU's backward, recomputed from x with the
// forward's own arithmetic rather than read from the output: one stream less).
template <typename T>
void batchnorm_backward_sums(int64_t batch, int64_t channels, int64_t plane, const T* x,
                             const T* dy, const float* mean, const float* invstd,
                             const float* relu_weight, const float* relu_bias, float* sum_dy,
                             float* sum_dy_xhat);

// dx from dy. With batch statistics (training) the gradient flows through the mean and the
// variance as well:
//   dx = weight * invstd * (dy - sum_dy / n - xhat * sum_dy_xhat / n),  n = batch * plane;
// with fixed (running) statistics it is weight * invstd * dy. relu_bias (or null): as for the
// sums, with `weight`.
template <typename T>
void batchnorm_backward_input(int64_t batch, int64_t channels, int64_t plane, const T* x,
                              const T* dy, const float* mean, const float* invstd,
                              const float* weight, const float* relu_bias, const float* sum_dy,
                              const float* sum_dy_xhat, bool batch_stats, T* dx);

}  // namespace dp
