#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/nn/attention.h"
#include "runtime/nn/gelu.h"
#include "runtime/nn/layernorm.h"
#include "runtime/nn/linear.h"
#include "runtime/nn/module.h"

namespace dp {

// GPT-2's MLP: c_fc = Linear(C, 4C) -> GELU (tanh) -> c_proj = Linear(4C, C), parameters
// "<name>.c_fc.*", "<name>.c_proj.*", initialised as GPT-2 (see CausalSelfAttention).
class Mlp : public Module {
 public:
  Mlp(std::string name, size_t embed, uint64_t seed, float proj_init_std = 0.02f);

  const Tensor& forward(const Tensor& x) override;
  const Tensor& backward(const Tensor& grad_output) override;

  Linear& c_fc() { return c_fc_; }
  Linear& c_proj() { return c_proj_; }

 private:
  Linear c_fc_;
  GELU gelu_;
  Linear c_proj_;
};

// One pre-LayerNorm GPT-2 block over x [B, T, C]:
//   mid = x + attn(ln_1(x));  out = mid + mlp(ln_2(mid))
// Children (and parameter order) as GPT-2: ln_1, attn, ln_2, mlp. The residual stream is in
// the compute dtype. Backward sends each residual's gradient to two places: through the
// branch, and straight to the block's input, where the two are summed. Backward reads
// grad_output for the last time before it writes dL/dx, so consecutive blocks can share
// their backward scratch (Module::share_backward_scratch), as GptModel's do.
class TransformerBlock : public Module {
 public:
  // proj_init_std: the std of both residual projections (attn.c_proj, mlp.c_proj); GPT-2
  // uses 0.02 / sqrt(2 * layers).
  TransformerBlock(std::string name, size_t embed, size_t heads, uint64_t seed,
                   float proj_init_std = 0.02f);

  const Tensor& forward(const Tensor& x) override;
  const Tensor& backward(const Tensor& grad_output) override;

  LayerNorm& ln_1() { return ln_1_; }
  CausalSelfAttention& attn() { return attn_; }
  LayerNorm& ln_2() { return ln_2_; }
  Mlp& mlp() { return mlp_; }

 private:
  LayerNorm ln_1_;
  CausalSelfAttention attn_;
  LayerNorm ln_2_;
  Mlp mlp_;
  DType input_dtype_ = DType::f32;
  Tensor mid_, out_;                                  // the residual stream after each branch
  BackwardScratch grad_mid_{*this}, grad_in_{*this};  // dL/dmid and dL/dx
  Tensor input16_;                                    // the input in the compute dtype
  BackwardScratch grad16_{*this},
      grad_in_out_{*this};  // dL/dout in compute dtype, dL/dx in input's
  Tensor no_grad_;
};

}  // namespace dp
