#include "runtime/nn/batchnorm2d.h"

#include <cmath>

#include "runtime/nn/buffers.h"
#include "runtime/nn/device_check.h"
#include "runtime/ops/batchnorm_ops.h"

namespace dp {

BatchNorm2d::BatchNorm2d(std::string name, size_t channels, float eps, float momentum)
    : Module(std::move(name)),
      channels_(channels),
      eps_(eps),
      momentum_(momentum),
      weight_(name_ + ".weight", {static_cast<int64_t>(channels)}),
      bias_(name_ + ".bias", {static_cast<int64_t>(channels)}),
      running_mean_(name_ + ".running_mean", {static_cast<int64_t>(channels)}),
      running_var_(name_ + ".running_var", {static_cast<int64_t>(channels)}),
      num_batches_tracked_(name_ + ".num_batches_tracked", {}) {
  DP_CHECK(channels_ > 0, "{}: BatchNorm2d needs channels > 0", name_);
  DP_CHECK(std::isfinite(eps_) && eps_ > 0, "{}: eps must be > 0, got {}", name_, eps_);
  DP_CHECK(momentum_ >= 0 && momentum_ <= 1, "{}: momentum must be in [0, 1], got {}", name_,
           momentum_);
  weight_.value.fill_(1.0f);
  running_var_.value.fill_(1.0f);
  register_parameter(weight_);
  register_parameter(bias_);
  register_buffer(running_mean_);
  register_buffer(running_var_);
  register_buffer(num_batches_tracked_);
}

const Tensor& BatchNorm2d::forward(const Tensor& x) {
  DP_CHECK(x.defined() && (x.dtype() == DType::f32 || x.dtype() == DType::bf16) && x.ndim() == 4 &&
               x.dim(1) == static_cast<int64_t>(channels_),
           "{}: expected a float32 or bfloat16 input [batch, {}, height, width], got {}", name_,
           channels_, x.defined() ? x.str() : "an undefined tensor");
  check_param_device(name_, x, weight_);
  check_param_device(name_, x, bias_);
  for (const Buffer* b : {&running_mean_, &running_var_, &num_batches_tracked_})
    DP_CHECK(b->value.device() == x.device(),
             "{}: the input is on {} but buffer '{}' is on {}; move the model to the input's "
             "device with Module::to()",
             name_, x.device().str(), b->name, b->value.device().str());
  const int64_t per_channel = x.dim(0) * x.dim(2) * x.dim(3);
  // PyTorch's rule: the unbiased variance of a single value is undefined.
  DP_CHECK(!training_ || per_channel > 1,
           "{}: training needs more than 1 value per channel, got input {} (use a larger batch, "
           "or eval())",
           name_, x.str());
  input_ = x;
  ensure_1d(mean_, static_cast<int64_t>(channels_), DType::f32, x.device());
  ensure_1d(invstd_, static_cast<int64_t>(channels_), DType::f32, x.device());
  batch_stats_ = training_;
  if (training_)
    ops::batchnorm_batch_stats(x, eps_, mean_, invstd_, &running_mean_.value, &running_var_.value,
                               &num_batches_tracked_.value, momentum_);
  else
    ops::batchnorm_running_stats(running_mean_.value, running_var_.value, eps_, mean_, invstd_);
  ensure_like(output_, x);
  ops::batchnorm_apply(x, mean_, invstd_, weight_.value, bias_.value, output_);
  return output_;
}

const Tensor& BatchNorm2d::backward(const Tensor& grad_output) {
  DP_CHECK(input_.defined(), "{}: backward called before forward", name_);
  DP_CHECK(grad_output.defined() && grad_output.dtype() == input_.dtype() &&
               grad_output.shape() == input_.shape(),
           "{}: grad_output is {}, expected {} (the shape and dtype of the last output)", name_,
           grad_output.defined() ? grad_output.str() : "undefined", output_.str());
  DP_CHECK(weight_.grad.numel() == channels_ && bias_.grad.numel() == channels_,
           "{}: gradient buffers are {} and {}, expected {} elements each", name_,
           weight_.grad.str(), bias_.grad.str(), channels_);
  check_grad_device(name_, input_, grad_output);
  check_param_device(name_, input_, weight_);
  check_param_device(name_, input_, bias_);
  ensure_1d(sum_dy_, static_cast<int64_t>(channels_), DType::f32, input_.device());
  ensure_1d(sum_dy_xhat_, static_cast<int64_t>(channels_), DType::f32, input_.device());
  ops::batchnorm_backward_params(input_, grad_output, mean_, invstd_, sum_dy_, sum_dy_xhat_,
                                 weight_.grad, bias_.grad);
  weight_.grad_ready();
  bias_.grad_ready();

  if (!needs_input_grad_) return no_grad_;
  ensure_like(grad_input_, input_);
  ops::batchnorm_backward_input(input_, grad_output, mean_, invstd_, weight_.value, sum_dy_,
                                sum_dy_xhat_, batch_stats_, grad_input_);
  return grad_input_;
}

}  // namespace dp
