#include "runtime/nn/relu.h"

#include "runtime/nn/device_check.h"
#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/device_ops.h"

namespace dp {

namespace {

// Same shape and device as `like` (where the layer computes): reused across steps.
void ensure_like(Tensor& buf, const Tensor& like) {
  if (buf.defined() && buf.shape() == like.shape() && buf.device() == like.device()) return;
  buf = Tensor::zeros(like.shape(), DType::f32, like.device());
}

}  // namespace

const Tensor& ReLU::forward(const Tensor& x) {
  DP_CHECK(x.defined() && x.dtype() == DType::f32, "{}: expected a float32 input, got {}", name_,
           x.defined() ? x.str() : "an undefined tensor");
  input_ = x;
  ensure_like(output_, x);
  if (x.is_cuda())
    gpu::relu_forward(x.device().index, x.numel(), x.f32(), output_.f32());
  else
    relu_forward(x.numel(), x.f32(), output_.f32());
  return output_;
}

const Tensor& ReLU::backward(const Tensor& grad_output) {
  DP_CHECK(input_.defined(), "{}: backward called before forward", name_);
  DP_CHECK(grad_output.defined() && grad_output.dtype() == DType::f32 &&
               grad_output.shape() == input_.shape(),
           "{}: grad_output is {}, expected {} (the shape of the last output)", name_,
           grad_output.defined() ? grad_output.str() : "undefined", output_.str());
  check_grad_device(name_, input_, grad_output);
  if (!needs_input_grad_) return no_grad_;
  ensure_like(grad_input_, input_);
  if (input_.is_cuda())
    gpu::relu_backward(input_.device().index, input_.numel(), input_.f32(), grad_output.f32(),
                       grad_input_.f32());
  else
    relu_backward(input_.numel(), input_.f32(), grad_output.f32(), grad_input_.f32());
  return grad_input_;
}

}  // namespace dp
