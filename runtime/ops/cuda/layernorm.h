#pragma once
// LayerNorm over the last dimension on a GPU, the twin of runtime/ops/cpu/layernorm.h (one
// warp per row, fixed reduction order). CUDA-free header; see embedding.h for the calling
// convention. `dtype` (float32 or bfloat16) is the type of x, y, dy and dx; statistics,
// parameters and their gradients are float32.
#include <cstddef>

#include "runtime/core/dtype.h"

namespace dp::gpu {

void layernorm_forward(int device, DType dtype, size_t rows, size_t cols, float eps, const void* x,
                       const float* weight, const float* bias, void* y, float* mean, float* rstd);

// dx overwritten; dweight and dbias ACCUMULATED. `scratch` holds rows * cols floats (dy *
// xhat, summed per column in a fixed order like the Linear bias gradient).
void layernorm_backward(int device, DType dtype, size_t rows, size_t cols, const void* x,
                        const void* dy, const float* weight, const float* mean, const float* rstd,
                        void* dx, float* dweight, float* dbias, float* scratch);

}  // namespace dp::gpu
