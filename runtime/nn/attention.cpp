#include "runtime/nn/attention.h"

#include "runtime/nn/device_check.h"
#include "runtime/nn/init_normal.h"
#include "runtime/nn/layer_io.h"

namespace dp {

CausalSelfAttention::CausalSelfAttention(std::string name, size_t embed, size_t heads,
                                         uint64_t seed, float proj_init_std)
    : Module(std::move(name)),
      embed_(embed),
      heads_(heads),
      c_attn_(name_ + ".c_attn", embed, 3 * embed, seed),
      c_proj_(name_ + ".c_proj", embed, embed, seed) {
  DP_CHECK(heads > 0 && embed % heads == 0,
           "{}: the embedding width {} must be divisible by the number of heads {}", name_, embed,
           heads);
  normal_init(c_attn_.weight().value, 0.02f, seed, c_attn_.weight().name);
  c_attn_.bias().value.zero_();
  normal_init(c_proj_.weight().value, proj_init_std, seed, c_proj_.weight().name);
  c_proj_.bias().value.zero_();
  register_module(c_attn_);
  register_module(c_proj_);
}

const Tensor& CausalSelfAttention::forward(const Tensor& x) {
  DP_CHECK(x.defined() && x.ndim() == 3 && static_cast<size_t>(x.dim(2)) == embed_,
           "{}: expected an input [batch, seq, {}], got {}", name_, embed_,
           x.defined() ? x.str() : "an undefined tensor");
  c_attn_.set_needs_input_grad(needs_input_grad_);
  qkv_ = c_attn_.forward(x);
  const int64_t B = x.dim(0), T = x.dim(1), H = static_cast<int64_t>(heads_);
  const Shape att_shape{B, H, T, T};
  ensure_shape(att_, att_shape, qkv_.dtype(), qkv_.device());
  ensure_like(y_, x, qkv_.dtype(), qkv_.device());
  ops::causal_attention_forward(qkv_, H, att_, y_, ws_);
  return c_proj_.forward(y_);
}

const Tensor& CausalSelfAttention::backward(const Tensor& grad_output) {
  DP_CHECK(qkv_.defined(), "{}: backward called before forward", name_);
  const Tensor& dy = c_proj_.backward(grad_output);
  ensure_like(*dqkv_, qkv_);
  ops::causal_attention_backward(qkv_, att_, dy, static_cast<int64_t>(heads_), *dqkv_, ws_);
  return c_attn_.backward(*dqkv_);
}

}  // namespace dp
