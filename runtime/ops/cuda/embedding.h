#pragma once
// Embedding lookup and its gradient on a GPU, the twins of runtime/ops/cpu/embedding.h.
// CUDA-free on purpose (runtime/ops/transformer_ops.cpp includes it in every build and calls
// it only when built with CUDA). Each call makes `device` current and enqueues on its
// compute stream; pointers are device pointers; `dtype` (float32 or bfloat16) is the type of
// the activations (out, dout).
#include <cstddef>
#include <cstdint>

#include "runtime/core/dtype.h"

namespace dp::gpu {

// out[i, :] = weight[idx[i], :]. SYNCHRONISES: returns the first i whose index is outside
// [0, num) (that row is left unwritten), or -1, read back from `flag`, one int32 of device
// scratch. (The host must know before anything computes with a garbage row.)
int64_t embedding_forward(int device, DType dtype, size_t n, size_t dim, size_t num,
                          const float* weight, const int32_t* idx, void* out, int32_t* flag);

// dweight[idx[i], :] += dout[i, :]. Deterministic: every table row is summed by one thread
// per column, in increasing i (no float atomics). Indices must be in [0, num).
void embedding_backward(int device, DType dtype, size_t n, size_t dim, size_t num, const void* dout,
                        const int32_t* idx, float* dweight);

}  // namespace dp::gpu
