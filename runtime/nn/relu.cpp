#include "runtime/nn/relu.h"

#include "runtime/nn/buffers.h"
#include "runtime/nn/device_check.h"
#include "runtime/ops/cpu/bf16_ops.h"
#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/device_ops.h"

namespace dp {

// ReLU computes in its input's dtype (float32, or bfloat16 under mixed precision): it only
// selects values, so there is nothing to gain from converting.
const Tensor& ReLU::forward(const Tensor& x) {
  DP_CHECK(x.defined() && (x.dtype() == DType::f32 || x.dtype() == DType::bf16),
           "{}: expected a float32 or bfloat16 input, got {}", name_,
           x.defined() ? x.str() : "an undefined tensor");
  input_ = x;
  ensure_like(output_, x);
  const size_t n = x.numel();
  const int dev = x.device().index;
  if (x.dtype() == DType::bf16) {
    if (x.is_cuda())
      gpu::relu_forward_bf16(dev, n, x.data<bf16>(), output_.data<bf16>());
    else
      relu_forward_bf16(n, x.data<bf16>(), output_.data<bf16>());
  } else if (x.is_cuda()) {
    gpu::relu_forward(dev, n, x.f32(), output_.f32());
  } else {
    relu_forward(n, x.f32(), output_.f32());
  }
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
  const size_t n = input_.numel();
  const int dev = input_.device().index;
  if (input_.dtype() == DType::bf16) {
    if (input_.is_cuda())
      gpu::relu_backward_bf16(dev, n, input_.data<bf16>(), grad_output.data<bf16>(),
                              grad_input_.data<bf16>());
    else
      relu_backward_bf16(n, input_.data<bf16>(), grad_output.data<bf16>(),
                         grad_input_.data<bf16>());
  } else if (input_.is_cuda()) {
    gpu::relu_backward(dev, n, input_.f32(), grad_output.f32(), grad_input_.f32());
  } else {
    relu_backward(n, input_.f32(), grad_output.f32(), grad_input_.f32());
  }
  return grad_input_;
}

}  // namespace dp
