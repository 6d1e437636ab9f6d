#pragma once
// The causal attention core as a Tensor-level operation (runtime/ops/cpu/attention.h and
// runtime/ops/cuda/attention.h), dispatched on device and dtype: from the packed
// qkv [B, T, 3C] to the probabilities att [B, H, T, T] and the heads' outputs y [B, T, C],
// and back. All activations share one dtype (float32 or bfloat16) and device.
#include <cstdint>

#include "runtime/core/tensor.h"

namespace dp::ops {

// Scratch the operations size and reuse (the caller only keeps it alive).
struct AttentionWorkspace {
  Tensor scores;    // CPU: float32 [T, T] scores of one head
  Tensor scores16;  // CPU, bfloat16 compute: the same in bfloat16 (GEMM operand)
  Tensor device;    // GPU: attention_scratch_bytes of device memory
};

// att and y must already have their shapes ([B, H, T, T], [B, T, C]) and qkv's dtype.
void causal_attention_forward(const Tensor& qkv, int64_t heads, Tensor& att, Tensor& y,
                              AttentionWorkspace& ws);
// dqkv (qkv's shape and dtype) is overwritten.
void causal_attention_backward(const Tensor& qkv, const Tensor& att, const Tensor& dy,
                               int64_t heads, Tensor& dqkv, AttentionWorkspace& ws);

}  // namespace dp::ops
