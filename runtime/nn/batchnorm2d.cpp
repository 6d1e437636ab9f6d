#include "runtime/nn/batchnorm2d.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/nn/buffers.h"
#include "runtime/nn/device_check.h"
#include "runtime/ops/batchnorm_ops.h"
#include "runtime/ops/tensor_ops.h"

namespace dp {

BatchNorm2d::BatchNorm2d(std::string name, size_t channels, float eps, float momentum, bool relu)
    : Module(std::move(name)),
      channels_(channels),
      eps_(eps),
      momentum_(momentum),
      relu_(relu),
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
  if (training_ && sync_)
    global_batch_stats(x);
  else if (training_)
    ops::batchnorm_batch_stats(x, eps_, mean_, invstd_, &running_mean_.value, &running_var_.value,
                               &num_batches_tracked_.value, momentum_);
  else
    ops::batchnorm_running_stats(running_mean_.value, running_var_.value, eps_, mean_, invstd_);
  ensure_like(output_, x);
  const bool fused = relu_ && !x.is_cuda();
  ops::batchnorm_apply(x, mean_, invstd_, weight_.value, bias_.value, output_, fused);
  if (relu_ && !fused) ops::relu_forward(output_, output_);
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
  // The ReLU's backward: inside the kernels on the CPU (from the forward's weight and bias,
  // which nothing changes before the optimizer step), a pass of its own on CUDA.
  const Tensor* dy = &grad_output;
  const ops::FusedReLU fused{weight_.value, bias_.value};
  const ops::FusedReLU* relu = relu_ ? &fused : nullptr;
  if (relu_ && input_.is_cuda()) {
    ensure_like(relu_grad_, input_);
    ops::relu_backward(output_, grad_output, relu_grad_);
    dy = &relu_grad_;
    relu = nullptr;
  }
  ops::batchnorm_backward_params(input_, *dy, mean_, invstd_, sum_dy_, sum_dy_xhat_, weight_.grad,
                                 bias_.grad, relu);
  // The parameter gradients keep this rank's sums: the Reducer averages them over the ranks.
  weight_.grad_ready();
  bias_.grad_ready();

  const bool global = sync_ && batch_stats_;
  // Every rank takes part in the sums, whether or not its input needs a gradient.
  if (global) {
    const int64_t c = static_cast<int64_t>(channels_);
    ensure_1d(sync_grads_, 2 * c, DType::f32, Device::cpu());
    sync_grads_.view(0, {c}).copy_(sum_dy_);
    sync_grads_.view(static_cast<size_t>(c), {c}).copy_(sum_dy_xhat_);
    sync_(sync_grads_);
    // The kernel divides the sums by this rank's count; the global means divide by the
    // global count, so the sums are rescaled by local / global count.
    const double local = double(input_.dim(0) * input_.dim(2) * input_.dim(3));
    float* s = sync_grads_.f32();
    for (int64_t i = 0; i < 2 * c; ++i) s[i] = float(double(s[i]) * local / global_count_);
    ensure_1d(global_dy_, c, DType::f32, input_.device());
    ensure_1d(global_dy_xhat_, c, DType::f32, input_.device());
    global_dy_.copy_(sync_grads_.view(0, {c}));
    global_dy_xhat_.copy_(sync_grads_.view(static_cast<size_t>(c), {c}));
  }
  if (!needs_input_grad_) return no_grad_;
  ensure_like(grad_input_, input_);
  ops::batchnorm_backward_input(
      input_, *dy, mean_, invstd_, weight_.value, global ? global_dy_ : sum_dy_,
      global ? global_dy_xhat_ : sum_dy_xhat_, batch_stats_, grad_input_, relu);
  return grad_input_;
}

void BatchNorm2d::global_batch_stats(const Tensor& x) {
  const int64_t c = static_cast<int64_t>(channels_);
  const double n = double(x.dim(0) * x.dim(2) * x.dim(3));
  // This rank's statistics first (its mean and biased variance)...
  ops::batchnorm_batch_stats(x, eps_, mean_, invstd_, nullptr, nullptr, nullptr, momentum_);
  const std::vector<float> mean = mean_.to_vector(), invstd = invstd_.to_vector();
  // ... then the global mean from every rank's sum and count, and the global variance from
  // every rank's sum of squared deviations from THAT mean: n (var + (mean - M)^2), all
  // positive terms, where E[x^2] - E[x]^2 in float32 would cancel.
  ensure_1d(sync_stats_, c + 1, DType::f32, Device::cpu());
  float* s = sync_stats_.f32();
  for (int64_t i = 0; i < c; ++i) s[i] = float(n * double(mean[size_t(i)]));
  s[c] = float(n);
  sync_(sync_stats_);
  global_count_ = double(s[c]);
  std::vector<double> global_mean(static_cast<size_t>(c));
  for (int64_t i = 0; i < c; ++i) global_mean[size_t(i)] = double(s[i]) / global_count_;
  for (int64_t i = 0; i < c; ++i) {
    const double is = double(invstd[size_t(i)]);
    const double var = std::max(0.0, 1.0 / (is * is) - double(eps_));
    const double d = double(mean[size_t(i)]) - global_mean[size_t(i)];
    s[i] = float(n * (var + d * d));
  }
  s[c] = 0.0f;
  sync_(sync_stats_);
  std::vector<float> m(static_cast<size_t>(c)), is(static_cast<size_t>(c));
  std::vector<float> rm = running_mean_.value.to_vector(), rv = running_var_.value.to_vector();
  const double unbias = global_count_ > 1 ? global_count_ / (global_count_ - 1) : 1.0;
  for (size_t i = 0; i < size_t(c); ++i) {
    const double var = double(s[i]) / global_count_;
    m[i] = float(global_mean[i]);
    is[i] = float(1.0 / std::sqrt(var + double(eps_)));
    rm[i] = float((1.0 - momentum_) * double(rm[i]) + momentum_ * global_mean[i]);
    rv[i] = float((1.0 - momentum_) * double(rv[i]) + momentum_ * var * unbias);
  }
  const Shape shape{c};
  mean_.copy_(Tensor::from_vector(shape, m));
  invstd_.copy_(Tensor::from_vector(shape, is));
  running_mean_.value.copy_(Tensor::from_vector(shape, rm));
  running_var_.value.copy_(Tensor::from_vector(shape, rv));
  std::vector<float> nbt = num_batches_tracked_.value.to_vector();
  num_batches_tracked_.value.copy_(Tensor::from_vector(num_batches_tracked_.value.shape(),
                                                       std::vector<float>{nbt.at(0) + 1.0f}));
}

size_t enable_sync_batchnorm(Module& root, const BatchNorm2d::StatsAllreduce& allreduce) {
  size_t n = 0;
  if (auto* bn = dynamic_cast<BatchNorm2d*>(&root)) {
    bn->set_sync(allreduce);
    ++n;
  }
  for (Module* c : root.children()) n += enable_sync_batchnorm(*c, allreduce);
  return n;
}

size_t count_batchnorm(const Module& root) {
  size_t n = dynamic_cast<const BatchNorm2d*>(&root) != nullptr ? 1 : 0;
  for (const Module* c : root.children()) n += count_batchnorm(*c);
  return n;
}

}  // namespace dp
