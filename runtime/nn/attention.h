#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/nn/linear.h"
#include "runtime/nn/module.h"
#include "runtime/ops/attention_ops.h"

namespace dp {

// GPT-2's causal multi-head self-attention over x [B, T, C]:
//   q, k, v = split(c_attn(x))                 c_attn = Linear(C, 3C), "<name>.c_attn.*"
//   y_h = softmax(q_h k_h^T / sqrt(d) + causal mask) v_h     per head h, d = C / heads
//   out = c_proj(concat_h y_h)                 c_proj = Linear(C, C), "<name>.c_proj.*"
// c_attn.weight [3C, C] holds the q, k and v projections stacked along the output, as GPT-2
// (and PyTorch's reference) do. Initialised as GPT-2: weights N(0, 0.02^2) (c_proj's with
// `proj_init_std`, GPT-2 scales it by 1/sqrt(2 * layers)), biases zero, from (seed, name).
// In bfloat16 compute the scores and the softmax are float32, the probabilities bfloat16.
class CausalSelfAttention : public Module {
 public:
  CausalSelfAttention(std::string name, size_t embed, size_t heads, uint64_t seed,
                      float proj_init_std = 0.02f);

  const Tensor& forward(const Tensor& x) override;
  const Tensor& backward(const Tensor& grad_output) override;

  Linear& c_attn() { return c_attn_; }
  Linear& c_proj() { return c_proj_; }
  size_t embed() const { return embed_; }
  size_t heads() const { return heads_; }
  // The last forward's attention probabilities [B, heads, T, T] (zero above the diagonal).
  const Tensor& probabilities() const { return att_; }

 private:
  size_t embed_;
  size_t heads_;
  Linear c_attn_;
  Linear c_proj_;
  Tensor qkv_;  // handle to c_attn's output [B, T, 3C]
  Tensor att_, y_;
  BackwardScratch dqkv_{*this};  // dL/dqkv [B, T, 3C]
  ops::AttentionWorkspace ws_;
};

}  // namespace dp
