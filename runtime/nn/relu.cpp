#include "runtime/nn/relu.h"

#include "runtime/nn/buffers.h"
#include "runtime/nn/device_check.h"
#include "runtime/ops/tensor_ops.h"

namespace dp {

// ReLU computes in its input's dtype (float32, or bfloat16 under mixed precision): it only
// selects values, so there is nothing to gain from converting.
const Tensor& ReLU::forward(const Tensor& x) {
  DP_CHECK(x.defined() && (x.dtype() == DType::f32 || x.dtype() == DType::bf16),
           "{}: expected a float32 or bfloat16 input, got {}", name_,
           x.defined() ? x.str() : "an undefined tensor");
  input_ = x;
  ensure_like(output_, x);
  ops::relu_forward(x, output_);
  return output_;
}

const Tensor& ReLU::backward(const Tensor& grad_output) {
  DP_CHECK(input_.defined(), "{}: backward called before forward", name_);
  DP_CHECK(grad_output.defined() && grad_output.dtype() == input_.dtype() &&
               grad_output.shape() == input_.shape(),
           "{}: grad_output is {}, expected {} (the shape and dtype of the last output)", name_,
           grad_output.defined() ? grad_output.str() : "undefined", output_.str());
  check_grad_device(name_, input_, grad_output);
  if (!needs_input_grad_) return no_grad_;
  ensure_like(grad_input_, input_);
  ops::relu_backward(input_, grad_output, grad_input_);
  return grad_input_;
}

}  // namespace dp
