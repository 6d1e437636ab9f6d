#pragma once
// LayerNorm over the last dimension on the CPU, forward and backward, for float32 and
// bfloat16 activations. Statistics (mean, reciprocal standard deviation) and parameter
// gradients are float32 whatever the activations are.
#include <cstddef>

#include "runtime/core/dtype.h"

namespace dp {

// For each of `rows` rows of `cols` values: y = (x - mean) * rstd * weight + bias with
// rstd = 1 / sqrt(biased variance + eps); mean[r] and rstd[r] are kept for backward.
void layernorm_forward(size_t rows, size_t cols, float eps, const float* x, const float* weight,
                       const float* bias, float* y, float* mean, float* rstd);
void layernorm_forward(size_t rows, size_t cols, float eps, const bf16* x, const float* weight,
                       const float* bias, bf16* y, float* mean, float* rstd);

// dx = the input gradient (overwritten); dweight and dbias are ACCUMULATED (+=), rows in
// order. mean and rstd are the forward's.
void layernorm_backward(size_t rows, size_t cols, const float* x, const float* dy,
                        const float* weight, const float* mean, const float* rstd, float* dx,
                        float* dweight, float* dbias);
void layernorm_backward(size_t rows, size_t cols, const bf16* x, const bf16* dy,
                        const float* weight, const float* mean, const float* rstd, bf16* dx,
                        float* dweight, float* dbias);

}  // namespace dp
