#include "runtime/nn/maxpool2d.h"

#include "runtime/nn/buffers.h"
#include "runtime/nn/device_check.h"
#include "runtime/ops/pool_ops.h"

namespace dp {

MaxPool2d::MaxPool2d(std::string name, size_t kernel_size, size_t stride, size_t padding)
    : Module(std::move(name)),
      kernel_(kernel_size),
      stride_(stride == 0 ? kernel_size : stride),
      padding_(padding) {
  DP_CHECK(kernel_ > 0, "{}: MaxPool2d needs a kernel_size > 0", name_);
  DP_CHECK(2 * padding_ <= kernel_,
           "{}: padding {} must be at most half the kernel size {} (as in PyTorch: a window "
           "must never lie entirely in the padding)",
           name_, padding_, kernel_);
}

int64_t MaxPool2d::out_size(int64_t in_size) const {
  const int64_t padded = in_size + 2 * static_cast<int64_t>(padding_);
  const int64_t k = static_cast<int64_t>(kernel_);
  DP_CHECK(in_size > 0 && padded >= k,
           "{}: a {}x{} pooling window does not fit an input of size {} with padding {}", name_,
           kernel_, kernel_, in_size, padding_);
  return (padded - k) / static_cast<int64_t>(stride_) + 1;
}

const Tensor& MaxPool2d::forward(const Tensor& x) {
  DP_CHECK(x.defined() && (x.dtype() == DType::f32 || x.dtype() == DType::bf16) && x.ndim() == 4,
           "{}: expected a float32 or bfloat16 input [batch, channels, height, width], got {}",
           name_, x.defined() ? x.str() : "an undefined tensor");
  const int64_t oh = out_size(x.dim(2)), ow = out_size(x.dim(3));
  geometry_ = Window2d{x.dim(0),
                       x.dim(1),
                       x.dim(2),
                       x.dim(3),
                       static_cast<int64_t>(kernel_),
                       static_cast<int64_t>(stride_),
                       static_cast<int64_t>(padding_)};
  input_shape_ = x.shape();
  const Shape out{x.dim(0), x.dim(1), oh, ow};
  ensure_shape(output_, out, x.dtype(), x.device());
  ensure_shape(argmax_, out, DType::i32, x.device());
  ops::maxpool2d_forward(x, geometry_, output_, argmax_);
  return output_;
}

const Tensor& MaxPool2d::backward(const Tensor& grad_output) {
  DP_CHECK(output_.defined(), "{}: backward called before forward", name_);
  DP_CHECK(grad_output.defined() && grad_output.dtype() == output_.dtype() &&
               grad_output.shape() == output_.shape(),
           "{}: grad_output is {}, expected {} (the shape and dtype of the last output)", name_,
           grad_output.defined() ? grad_output.str() : "undefined", output_.str());
  check_grad_device(name_, output_, grad_output);
  if (!needs_input_grad_) return no_grad_;
  ensure_shape(grad_input_, input_shape_, grad_output.dtype(), grad_output.device());
  ops::maxpool2d_backward(grad_output, argmax_, geometry_, grad_input_);
  return grad_input_;
}

}  // namespace dp
