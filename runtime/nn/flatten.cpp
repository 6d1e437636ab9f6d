#include "runtime/nn/flatten.h"

#include "runtime/nn/device_check.h"
#include "runtime/nn/layer_io.h"

namespace dp {

const Tensor& Flatten::forward(const Tensor& x) {
  DP_CHECK(x.defined() && x.ndim() >= 2, "{}: expected an input [batch, ...], got {}", name_,
           x.defined() ? x.str() : "an undefined tensor");
  int64_t features = 1;
  for (size_t i = 1; i < x.ndim(); ++i) features *= x.dim(i);
  input_shape_ = x.shape();
  output_ = x.reshape({x.dim(0), features});
  return output_;
}

const Tensor& Flatten::backward(const Tensor& grad_output) {
  DP_CHECK(output_.defined(), "{}: backward called before forward", name_);
  check_grad_output(name_, grad_output, output_);
  check_grad_device(name_, output_, grad_output);
  if (!needs_input_grad_) return no_grad_;
  grad_input_ = grad_output.reshape(input_shape_);
  return grad_input_;
}

}  // namespace dp
