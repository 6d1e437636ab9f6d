#include "runtime/nn/layernorm.h"

#include "runtime/nn/buffers.h"
#include "runtime/nn/device_check.h"
#include "runtime/nn/layer_io.h"
#include "runtime/ops/transformer_ops.h"

namespace dp {

LayerNorm::LayerNorm(std::string name, size_t dim, float eps)
    : Module(std::move(name)),
      dim_(dim),
      eps_(eps),
      weight_(name_ + ".weight", {static_cast<int64_t>(dim)}),
      bias_(name_ + ".bias", {static_cast<int64_t>(dim)}) {
  DP_CHECK(dim > 0, "{}: LayerNorm needs dim > 0", name_);
  DP_CHECK(eps > 0.0f, "{}: LayerNorm needs eps > 0, got {}", name_, eps);
  weight_.value.fill_(1.0f);
  register_parameter(weight_);
  register_parameter(bias_);
}

const Tensor& LayerNorm::forward(const Tensor& x) {
  DP_CHECK(x.defined() && (x.dtype() == DType::f32 || x.dtype() == DType::bf16) && x.ndim() >= 1 &&
               static_cast<size_t>(x.dim(x.ndim() - 1)) == dim_,
           "{}: expected a float32 or bfloat16 input [..., {}], got {}", name_, dim_,
           x.defined() ? x.str() : "an undefined tensor");
  check_input_dtype(name_, x, compute_dtype_);
  check_param_device(name_, x, weight_);
  check_param_device(name_, x, bias_);
  input_dtype_ = x.dtype();
  input_ = as_dtype(x, compute_dtype_, input16_);
  ensure_like(output_, input_);
  const int64_t rows = static_cast<int64_t>(x.numel() / dim_);
  ensure_1d(mean_, rows, DType::f32, x.device());
  ensure_1d(rstd_, rows, DType::f32, x.device());
  ops::layernorm_forward(input_, weight_.value, bias_.value, eps_, output_, mean_, rstd_);
  return output_;
}

const Tensor& LayerNorm::backward(const Tensor& grad_output) {
  DP_CHECK(input_.defined(), "{}: backward called before forward", name_);
  check_grad_output(name_, grad_output, output_);
  check_grad_device(name_, input_, grad_output);
  check_param_device(name_, input_, weight_);
  check_param_device(name_, input_, bias_);
  DP_CHECK(weight_.grad.numel() == dim_ && bias_.grad.numel() == dim_,
           "{}: gradient buffers are {} and {}, expected [{}]", name_, weight_.grad.str(),
           bias_.grad.str(), dim_);
  const Tensor& dy = as_dtype(grad_output, compute_dtype_, *grad16_);
  // dx comes out of the same pass as the parameter gradients, so it is always computed.
  ensure_like(*grad_input_, input_);
  ops::layernorm_backward(input_, dy, weight_.value, mean_, rstd_, *grad_input_, weight_.grad,
                          bias_.grad, *scratch_);
  weight_.grad_ready();
  bias_.grad_ready();
  if (!needs_input_grad_) return no_grad_;
  return as_dtype(*grad_input_, input_dtype_, *grad_input_out_);
}

}  // namespace dp
