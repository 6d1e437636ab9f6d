#pragma once
// GPT-2's GELU (tanh approximation) on a GPU, the twin of runtime/ops/cpu/gelu.h. CUDA-free
// header; see embedding.h for the calling convention. `dtype`: float32 or bfloat16
// (computed in float32, rounded once).
#include <cstddef>

#include "runtime/core/dtype.h"

namespace dp::gpu {

void gelu_forward(int device, DType dtype, size_t n, const void* x, void* y);
// dx may equal dy.
void gelu_backward(int device, DType dtype, size_t n, const void* x, const void* dy, void* dx);

}  // namespace dp::gpu
