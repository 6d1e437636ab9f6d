#pragma once
// Batch normalisation over the channels of a [batch, channels, plane] tensor on the GPU, the
// twins of runtime/ops/cpu/batchnorm.h. CUDA-free on purpose; each call makes `device`
// current and enqueues on its compute stream. Activations are `dtype` (float32 or
// bfloat16), everything else float32. One block per channel, reduced in a fixed order.
#include <cstdint>

#include "runtime/core/dtype.h"

namespace dp::gpu {

// mean[c] and invstd[c] = 1 / sqrt(biased variance + eps) of the batch. When running_mean is
// not null, also running = (1 - momentum) * running + momentum * batch statistic (the
// unbiased variance for running_var) and, when num_batches_tracked is not null, += 1.
void batchnorm_batch_stats(int device, DType dtype, int64_t batch, int64_t channels, int64_t plane,
                           const void* x, float eps, float momentum, float* mean, float* invstd,
                           float* running_mean, float* running_var, float* num_batches_tracked);

// mean = running_mean, invstd = 1 / sqrt(running_var + eps) (evaluation).
void batchnorm_running_stats(int device, int64_t channels, const float* running_mean,
                             const float* running_var, float eps, float* mean, float* invstd);

// y = (x - mean[c]) * invstd[c] * weight[c] + bias[c].
void batchnorm_apply(int device, DType dtype, int64_t batch, int64_t channels, int64_t plane,
                     const void* x, const float* mean, const float* invstd, const float* weight,
                     const float* bias, void* y);

// sum_dy[c] and sum_dy_xhat[c] (overwritten), and dweight += sum_dy_xhat, dbias += sum_dy.
void batchnorm_backward_sums(int device, DType dtype, int64_t batch, int64_t channels,
                             int64_t plane, const void* x, const void* dy, const float* mean,
                             const float* invstd, float* sum_dy, float* sum_dy_xhat, float* dweight,
                             float* dbias);

// dx as runtime/ops/cpu/batchnorm.h's batchnorm_backward_input.
void batchnorm_backward_input(int device, DType dtype, int64_t batch, int64_t channels,
                              int64_t plane, const void* x, const void* dy, const float* mean,
                              const float* invstd, const float* weight, const float* sum_dy,
                              const float* sum_dy_xhat, bool batch_stats, void* dx);

}  // namespace dp::gpu
