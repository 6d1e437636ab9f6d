#pragma once
// The core of GPT-2's causal self-attention on the CPU, between the two projections: from
// the packed qkv = x W_qkv^T + b ([B, T, 3C]: q, k, v side by side, head h in columns
// h*d .. h*d + d - 1 of each, d = C / H) to the heads' outputs concatenated, y [B, T, C]:
//   att[b, h] = softmax(q k^T / sqrt(d)) with row t masked to columns 0..t,
//   y[b, :, h] = att[b, h] v.
// Each (batch, head) runs as row-major GEMMs straight on the strided q, k, v (OpenBLAS,
// runtime/ops/cpu/gemm.h): no permuted copies. The probabilities att [B, H, T, T] (zeros
// above the diagonal) are kept for backward, as llm.c does.
//
// float32 throughout, or bfloat16 activations with float32 scores, softmax and GEMM
// accumulation (the GEMM operands, att and the outputs are bfloat16).
#include <cstddef>

#include "runtime/core/dtype.h"

namespace dp {

struct AttentionShape {
  size_t batch = 0, seq = 0, channels = 0, heads = 0;  // B, T, C, H (C divisible by H)
};

// Float32 scratch of at least seq * seq elements; bfloat16 also needs seq * seq of bfloat16.
struct AttentionScratch {
  float* scores = nullptr;
  bf16* scores16 = nullptr;
};

void attention_forward(const AttentionShape& s, const float* qkv, float* att, float* y,
                       AttentionScratch scratch);
void attention_forward(const AttentionShape& s, const bf16* qkv, bf16* att, bf16* y,
                       AttentionScratch scratch);

// From dy [B, T, C] and the forward's qkv and att, dqkv [B, T, 3C] (overwritten).
void attention_backward(const AttentionShape& s, const float* qkv, const float* att,
                        const float* dy, float* dqkv, AttentionScratch scratch);
void attention_backward(const AttentionShape& s, const bf16* qkv, const bf16* att, const bf16* dy,
                        bf16* dqkv, AttentionScratch scratch);

}  // namespace dp
