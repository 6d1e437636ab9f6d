#include "runtime/nn/transformer_block.h"

#include "runtime/nn/buffers.h"
#include "runtime/nn/init_normal.h"
#include "runtime/nn/layer_io.h"
#include "runtime/ops/tensor_ops.h"

namespace dp {

Mlp::Mlp(std::string name, size_t embed, uint64_t seed, float proj_init_std)
    : Module(std::move(name)),
      c_fc_(name_ + ".c_fc", embed, 4 * embed, seed),
      gelu_(name_ + ".gelu"),
      c_proj_(name_ + ".c_proj", 4 * embed, embed, seed) {
  normal_init(c_fc_.weight().value, 0.02f, seed, c_fc_.weight().name);
  c_fc_.bias().value.zero_();
  normal_init(c_proj_.weight().value, proj_init_std, seed, c_proj_.weight().name);
  c_proj_.bias().value.zero_();
  register_module(c_fc_);
  register_module(gelu_);
  register_module(c_proj_);
}

const Tensor& Mlp::forward(const Tensor& x) {
  c_fc_.set_needs_input_grad(needs_input_grad_);
  return c_proj_.forward(gelu_.forward(c_fc_.forward(x)));
}

const Tensor& Mlp::backward(const Tensor& grad_output) {
  return c_fc_.backward(gelu_.backward(c_proj_.backward(grad_output)));
}

TransformerBlock::TransformerBlock(std::string name, size_t embed, size_t heads, uint64_t seed,
                                   float proj_init_std)
    : Module(std::move(name)),
      ln_1_(name_ + ".ln_1", embed),
      attn_(name_ + ".attn", embed, heads, seed, proj_init_std),
      ln_2_(name_ + ".ln_2", embed),
      mlp_(name_ + ".mlp", embed, seed, proj_init_std) {
  register_module(ln_1_);
  register_module(attn_);
  register_module(ln_2_);
  register_module(mlp_);
}

const Tensor& TransformerBlock::forward(const Tensor& x) {
  DP_CHECK(x.defined() && (x.dtype() == DType::f32 || x.dtype() == DType::bf16),
           "{}: expected a float32 or bfloat16 input, got {}", name_,
           x.defined() ? x.str() : "an undefined tensor");
  check_input_dtype(name_, x, compute_dtype_);
  input_dtype_ = x.dtype();
  // The residual sums need one dtype: the stream runs in the compute dtype.
  const Tensor& xc = as_dtype(x, compute_dtype_, input16_);
  ln_1_.set_needs_input_grad(needs_input_grad_);
  const Tensor& a = attn_.forward(ln_1_.forward(xc));
  ensure_like(mid_, xc);
  ops::add(xc, a, mid_);
  const Tensor& m = mlp_.forward(ln_2_.forward(mid_));
  ensure_like(out_, mid_);
  ops::add(mid_, m, out_);
  return out_;
}

const Tensor& TransformerBlock::backward(const Tensor& grad_output) {
  DP_CHECK(out_.defined(), "{}: backward called before forward", name_);
  check_grad_output(name_, grad_output, out_);
  const Tensor& g = as_dtype(grad_output, compute_dtype_, *grad16_);
  // dL/dmid = dL/dout (the skip) + the MLP branch's gradient.
  const Tensor& g_mlp = ln_2_.backward(mlp_.backward(g));
  ensure_like(*grad_mid_, g);
  ops::add(g, g_mlp, *grad_mid_);
  // dL/dx = dL/dmid (the skip) + the attention branch's gradient; ln_1 skips its dx when the
  // block's input needs none, and so does the sum.
  const Tensor& g_attn = ln_1_.backward(attn_.backward(*grad_mid_));
  if (!needs_input_grad_) return no_grad_;
  ensure_like(*grad_in_, *grad_mid_);
  ops::add(*grad_mid_, g_attn, *grad_in_);
  return as_dtype(*grad_in_, input_dtype_, *grad_in_out_);
}

}  // namespace dp
