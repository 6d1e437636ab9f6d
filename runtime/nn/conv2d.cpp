#include "runtime/nn/conv2d.h"

#include <limits>

#include "runtime/nn/buffers.h"
#include "runtime/nn/device_check.h"
#include "runtime/nn/init.h"
#include "runtime/nn/layer_io.h"

namespace dp {

namespace {

int64_t i64(size_t v) {
  return static_cast<int64_t>(v);
}

}  // namespace

Conv2d::Conv2d(std::string name, size_t in_channels, size_t out_channels, size_t kernel_size,
               size_t stride, size_t padding, uint64_t seed, bool bias)
    : Module(std::move(name)),
      in_(in_channels),
      out_(out_channels),
      kernel_(kernel_size),
      stride_(stride),
      padding_(padding),
      has_bias_(bias),
      weight_(name_ + ".weight",
              {i64(out_channels), i64(in_channels), i64(kernel_size), i64(kernel_size)}),
      bias_(name_ + ".bias", {bias ? i64(out_channels) : 0}) {
  DP_CHECK(in_ > 0 && out_ > 0 && kernel_ > 0 && stride_ > 0,
           "{}: Conv2d needs in_channels, out_channels, kernel_size and stride > 0, got {} -> {}, "
           "kernel {}, stride {}",
           name_, in_, out_, kernel_, stride_);
  // The GEMMs take int sizes: the weight's [O, C*k*k] must fit.
  constexpr size_t kMaxDim = static_cast<size_t>(std::numeric_limits<int>::max());
  DP_CHECK(out_ <= kMaxDim && in_ * kernel_ * kernel_ <= kMaxDim,
           "{}: Conv2d {} -> {} with a {}x{} kernel exceeds the BLAS int range", name_, in_, out_,
           kernel_, kernel_);
  init_linear(weight_, bias_, in_ * kernel_ * kernel_, seed);
  register_parameter(weight_);
  if (has_bias_) register_parameter(bias_);
}

int64_t Conv2d::out_size(int64_t in_size) const {
  const int64_t padded = in_size + 2 * i64(padding_);
  DP_CHECK(in_size > 0 && padded >= i64(kernel_),
           "{}: a {}x{} kernel does not fit an input of size {} with padding {}", name_, kernel_,
           kernel_, in_size, padding_);
  return (padded - i64(kernel_)) / i64(stride_) + 1;
}

const Tensor& Conv2d::forward(const Tensor& x) {
  DP_CHECK(x.defined() && (x.dtype() == DType::f32 || x.dtype() == DType::bf16) && x.ndim() == 4 &&
               x.dim(1) == i64(in_),
           "{}: expected a float32 or bfloat16 input [batch, {}, height, width], got {}", name_,
           in_, x.defined() ? x.str() : "an undefined tensor");
  check_param_device(name_, x, weight_);
  if (has_bias_) check_param_device(name_, x, bias_);
  check_input_dtype(name_, x, compute_dtype_);
  const int64_t oh = out_size(x.dim(2)), ow = out_size(x.dim(3));
  geometry_ =
      Window2d{x.dim(0), i64(in_), x.dim(2), x.dim(3), i64(kernel_), i64(stride_), i64(padding_)};
  input_dtype_ = x.dtype();
  input_ = as_dtype(x, compute_dtype_, input16_);
  w_ = &as_dtype(weight_.value, compute_dtype_, weight16_);
  ensure_shape(output_, {x.dim(0), i64(out_), oh, ow}, compute_dtype_, x.device());
  ops::conv2d_forward(input_, *w_, has_bias_ ? &bias_.value : nullptr, geometry_, ws_, output_);
  return output_;
}

const Tensor& Conv2d::backward(const Tensor& grad_output) {
  DP_CHECK(input_.defined(), "{}: backward called before forward", name_);
  check_grad_output(name_, grad_output, output_);
  // The Reducer may have re-pointed grad into a bucket; a wrong-sized view there would be
  // silent memory corruption.
  DP_CHECK(
      weight_.grad.numel() == weight_.value.numel() && (!has_bias_ || bias_.grad.numel() == out_),
      "{}: gradient buffers are {} and {}, expected {} and {} elements", name_, weight_.grad.str(),
      bias_.grad.str(), weight_.value.numel(), out_);
  check_grad_device(name_, input_, grad_output);
  check_param_device(name_, input_, weight_);
  if (has_bias_) check_param_device(name_, input_, bias_);
  DP_CHECK(grad_output.dtype() == compute_dtype_ || compute_dtype_ == DType::bf16,
           "{}: grad_output is {}, expected float32", name_, grad_output.str());
  const Tensor* dy = &as_dtype(grad_output, compute_dtype_, grad16_);
  ops::conv2d_backward_params(input_, *dy, geometry_, ws_, weight_.grad,
                              has_bias_ ? &bias_.grad : nullptr);
  weight_.grad_ready();
  if (has_bias_) bias_.grad_ready();

  if (!needs_input_grad_) return no_grad_;
  ensure_shape(grad_input_, input_.shape(), input_dtype_, input_.device());
  ops::conv2d_backward_input(*dy, *w_, geometry_, ws_, grad_input_);
  return grad_input_;
}

}  // namespace dp
