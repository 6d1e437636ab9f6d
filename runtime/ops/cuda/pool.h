#pragma once
// 2-D max pooling on the GPU, the twins of runtime/ops/cpu/pool.h (same tie and NaN rules,
// same argmax: ih * W + iw within the plane). CUDA-free on purpose; each call makes `device`
// current and enqueues on its compute stream. dtype: float32 or bfloat16.
#include <cstdint>

#include "runtime/core/dtype.h"
#include "runtime/ops/window2d.h"

namespace dp::gpu {

void maxpool2d_forward(int device, DType dtype, const Window2d& g, const void* x, void* y,
                       int32_t* argmax);

// Each input pixel gathers the gradients of the outputs whose argmax it is (no atomics:
// deterministic when windows overlap), summed in float32.
void maxpool2d_backward(int device, DType dtype, const Window2d& g, const void* dy,
                        const int32_t* argmax, void* dx);

}  // namespace dp::gpu
