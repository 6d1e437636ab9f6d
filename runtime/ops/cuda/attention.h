#pragma once
// The causal attention core on a GPU, the twin of runtime/ops/cpu/attention.h (same
// layouts: packed qkv [B, T, 3C], probabilities att [B, H, T, T] with zeros above the
// diagonal, y [B, T, C]). llm.c's layout: q, k, v are permuted to [B, H, T, d] in scratch so
// that each product is ONE strided batched cuBLAS GEMM over all B * H heads (float32
// accumulation, no TF32), and the causal softmax is a warp per row. CUDA-free header; see
// embedding.h for the calling convention. `dtype`: float32 or bfloat16.
#include <cstddef>

#include "runtime/core/dtype.h"
#include "runtime/ops/cpu/attention.h"

namespace dp::gpu {

// Device scratch both calls need, in bytes (the permuted q, k, v, their gradients, the
// permuted y or dy, and the float32 scores).
size_t attention_scratch_bytes(DType dtype, const AttentionShape& s);

void attention_forward(int device, DType dtype, const AttentionShape& s, const void* qkv, void* att,
                       void* y, void* scratch);
// dqkv [B, T, 3C] overwritten.
void attention_backward(int device, DType dtype, const AttentionShape& s, const void* qkv,
                        const void* att, const void* dy, void* dqkv, void* scratch);

}  // namespace dp::gpu
