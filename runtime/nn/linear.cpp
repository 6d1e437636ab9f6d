#include "runtime/nn/linear.h"

#include <limits>

#include "runtime/nn/buffers.h"
#include "runtime/nn/device_check.h"
#include "runtime/nn/init.h"
#include "runtime/nn/layer_io.h"
#include "runtime/ops/tensor_ops.h"

namespace dp {

namespace {

// `like` with its last dimension replaced by n.
Shape with_last(const Shape& like, int64_t n) {
  Shape s = like;
  s.back() = n;
  return s;
}

}  // namespace

Linear::Linear(std::string name, size_t in_features, size_t out_features, uint64_t seed, bool bias)
    : Module(std::move(name)),
      in_(in_features),
      out_(out_features),
      has_bias_(bias),
      weight_(name_ + ".weight",
              {static_cast<int64_t>(out_features), static_cast<int64_t>(in_features)}),
      bias_(name_ + ".bias", {bias ? static_cast<int64_t>(out_features) : 0}) {
  DP_CHECK(in_ > 0 && out_ > 0, "{}: Linear needs in_features and out_features > 0, got {} -> {}",
           name_, in_, out_);
  // cblas takes int sizes; a layer this large would overflow silently.
  constexpr size_t kMaxDim = static_cast<size_t>(std::numeric_limits<int>::max());
  DP_CHECK(in_ <= kMaxDim && out_ <= kMaxDim, "{}: Linear {} -> {} exceeds the BLAS int range",
           name_, in_, out_);
  init_linear(weight_, bias_, in_, seed);
  register_parameter(weight_);
  if (has_bias_) register_parameter(bias_);
}

const Tensor& Linear::forward(const Tensor& x) {
  DP_CHECK(x.defined() && (x.dtype() == DType::f32 || x.dtype() == DType::bf16) && x.ndim() >= 2,
           "{}: expected a float32 or bfloat16 input of shape [batch, ..., {}], got {}", name_, in_,
           x.defined() ? x.str() : "an undefined tensor");
  DP_CHECK(static_cast<size_t>(x.dim(x.ndim() - 1)) == in_,
           "{}: input {} has {} features, expected {}", name_, x.str(), x.dim(x.ndim() - 1), in_);
  check_param_device(name_, x, weight_);
  if (has_bias_) check_param_device(name_, x, bias_);
  check_input_dtype(name_, x, compute_dtype_);
  input_dtype_ = x.dtype();
  // copy-assignment reuses input_'s shape capacity: no allocation per step
  input_ = as_dtype(x, compute_dtype_, input16_);
  w_ = &as_dtype(weight_.value, compute_dtype_, weight16_);
  const Tensor* b = has_bias_ ? &as_dtype(bias_.value, compute_dtype_, bias16_) : nullptr;
  ensure_shape(output_, with_last(x.shape(), static_cast<int64_t>(out_)), compute_dtype_,
               x.device());
  // y = x W^T + b in one call (the bias in the GEMM's epilogue where the kernel can).
  ops::matmul(input_, false, *w_, true, output_, 1.0f, 0.0f, b);
  return output_;
}

const Tensor& Linear::backward(const Tensor& grad_output) {
  DP_CHECK(input_.defined(), "{}: backward called before forward", name_);
  check_grad_output(name_, grad_output, output_);
  // The Reducer may have re-pointed grad into a bucket; a wrong-sized view there would be
  // silent memory corruption.
  DP_CHECK(weight_.grad.numel() == out_ * in_ && (!has_bias_ || bias_.grad.numel() == out_),
           "{}: gradient buffers are {} and {}, expected {} and {} elements", name_,
           weight_.grad.str(), bias_.grad.str(), out_ * in_, out_);
  check_grad_device(name_, input_, grad_output);
  // The Reducer or Module::to() may have moved the gradients since forward.
  check_param_device(name_, input_, weight_);
  if (has_bias_) check_param_device(name_, input_, bias_);
  DP_CHECK(grad_output.dtype() == compute_dtype_ || compute_dtype_ == DType::bf16,
           "{}: grad_output is {}, expected float32", name_, grad_output.str());
  const Tensor* dy = &as_dtype(grad_output, compute_dtype_, *grad16_);
  // dW[out, in] += dy^T x and db[out] += column sums of dy, accumulated in float32 into the
  // master gradients (which may be views into a Reducer bucket).
  // On a GPU these are only enqueued when grad_ready() fires: a hook that reads the gradient
  // on another stream (a collective) must first wait for an event recorded on
  // compute_stream(device); work on the compute stream itself is ordered by issue order.
  ops::matmul(*dy, true, input_, false, weight_.grad, 1.0f, 1.0f);
  if (has_bias_) ops::col_sum_accumulate(*dy, bias_.grad);
  weight_.grad_ready();
  if (has_bias_) bias_.grad_ready();

  if (!needs_input_grad_) return no_grad_;
  // dx = dy W with the forward's W, in the dtype the input came in.
  ensure_shape(*grad_input_, input_.shape(), input_dtype_, input_.device());
  // (bfloat16 operands write a float32 dx directly when the input came as float32.)
  ops::matmul(*dy, false, *w_, false, *grad_input_);
  return *grad_input_;
}

}  // namespace dp
