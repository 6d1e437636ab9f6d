#pragma once
// Element-wise sums for residual connections on a GPU. CUDA-free on purpose: the Tensor-level
// dispatch (runtime/ops/tensor_ops.cpp) includes it in every build and calls it only when
// built with CUDA. Each call makes `device` current and enqueues on its compute stream.
#include <cstddef>

#include "runtime/core/dtype.h"

namespace dp::gpu {

// y = a + b, or y += a when b is null; `dtype` float32 or bfloat16 (summed in float32,
// rounded once). y may equal a.
void add(int device, DType dtype, size_t n, const void* a, const void* b, void* y);

}  // namespace dp::gpu
