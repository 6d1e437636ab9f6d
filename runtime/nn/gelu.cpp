#include "runtime/nn/gelu.h"

#include "runtime/nn/buffers.h"
#include "runtime/nn/device_check.h"
#include "runtime/nn/layer_io.h"
#include "runtime/ops/transformer_ops.h"

namespace dp {

const Tensor& GELU::forward(const Tensor& x) {
  DP_CHECK(x.defined() && (x.dtype() == DType::f32 || x.dtype() == DType::bf16),
           "{}: expected a float32 or bfloat16 input, got {}", name_,
           x.defined() ? x.str() : "an undefined tensor");
  check_input_dtype(name_, x, compute_dtype_);
  input_dtype_ = x.dtype();
  input_ = as_dtype(x, compute_dtype_, input16_);
  ensure_like(output_, input_);
  ops::gelu_forward(input_, output_);
  return output_;
}

const Tensor& GELU::backward(const Tensor& grad_output) {
  DP_CHECK(input_.defined(), "{}: backward called before forward", name_);
  check_grad_output(name_, grad_output, output_);
  check_grad_device(name_, input_, grad_output);
  if (!needs_input_grad_) return no_grad_;
  const Tensor& dy = as_dtype(grad_output, compute_dtype_, *grad16_);
  ensure_like(*grad_input_, input_);
  ops::gelu_backward(input_, dy, *grad_input_);
  return as_dtype(*grad_input_, input_dtype_, *grad_input_out_);
}

}  // namespace dp
