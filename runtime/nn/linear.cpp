#include "runtime/nn/linear.h"

#include <limits>

#include "runtime/nn/buffers.h"
#include "runtime/nn/device_check.h"
#include "runtime/nn/init.h"
#include "runtime/ops/cast.h"
#include "runtime/ops/cpu/bf16_ops.h"
#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/cpu/gemm.h"
#include "runtime/ops/device_ops.h"

namespace dp {

namespace {

// The bfloat16-operand GEMM on whichever device the operands are.
void gemm16(Device d, bool ta, bool tb, int m, int n, int k, const Tensor& a, int lda,
            const Tensor& b, int ldb, float beta, Tensor& c, int ldc, const Tensor* bias) {
  const void* bias_p = bias != nullptr ? bias->raw() : nullptr;
  if (d.is_cuda())
    gpu::gemm_bf16(d.index, ta, tb, m, n, k, 1.0f, a.data<bf16>(), lda, b.data<bf16>(), ldb, beta,
                   c.raw(), ldc, c.dtype(), bias_p);
  else
    gemm_bf16(ta, tb, m, n, k, 1.0f, a.data<bf16>(), lda, b.data<bf16>(), ldb, beta, c.raw(), ldc,
              c.dtype(), bias_p);
}

}  // namespace

Linear::Linear(std::string name, size_t in_features, size_t out_features, uint64_t seed)
    : Module(std::move(name)),
      in_(in_features),
      out_(out_features),
      weight_(name_ + ".weight",
              {static_cast<int64_t>(out_features), static_cast<int64_t>(in_features)}),
      bias_(name_ + ".bias", {static_cast<int64_t>(out_features)}) {
  DP_CHECK(in_ > 0 && out_ > 0, "{}: Linear needs in_features and out_features > 0, got {} -> {}",
           name_, in_, out_);
  // cblas takes int sizes; a layer this large would overflow silently.
  constexpr size_t kMaxDim = static_cast<size_t>(std::numeric_limits<int>::max());
  DP_CHECK(in_ <= kMaxDim && out_ <= kMaxDim, "{}: Linear {} -> {} exceeds the BLAS int range",
           name_, in_, out_);
  init_linear(weight_, bias_, in_, seed);
}

const Tensor& Linear::forward(const Tensor& x) {
  DP_CHECK(x.defined() && (x.dtype() == DType::f32 || x.dtype() == DType::bf16) && x.ndim() == 2,
           "{}: expected a float32 or bfloat16 input of shape [batch, {}], got {}", name_, in_,
           x.defined() ? x.str() : "an undefined tensor");
  DP_CHECK(static_cast<size_t>(x.dim(1)) == in_, "{}: input has {} features, expected {}", name_,
           x.dim(1), in_);
  const int64_t batch = x.dim(0);
  DP_CHECK(batch <= std::numeric_limits<int>::max(), "{}: batch {} exceeds the BLAS int range",
           name_, batch);
  check_param_device(name_, x, weight_);
  check_param_device(name_, x, bias_);
  if (compute_dtype_ == DType::bf16) return forward_bf16(x);
  DP_CHECK(x.dtype() == DType::f32,
           "{}: got a bfloat16 input but computes in float32 (set the same compute dtype on "
           "every layer)",
           name_);
  input_ = x;  // copy-assignment reuses input_'s shape capacity: no allocation per step
  ensure_2d(output_, batch, static_cast<int64_t>(out_), DType::f32, x.device());
  if (batch == 0) return output_;
  float* y = output_.f32();
  if (x.is_cuda()) {
    // y = x W^T + b in one cuBLASLt call (bias fused into the epilogue where it can be).
    gpu::gemm_f32(x.device().index, false, true, static_cast<int>(batch), static_cast<int>(out_),
                  static_cast<int>(in_), 1.0f, x.f32(), static_cast<int>(in_), weight_.value.f32(),
                  static_cast<int>(in_), 0.0f, y, static_cast<int>(out_), bias_.value.f32());
    return output_;
  }
  // y = x W^T (overwrite), then + b per row.
  gemm(false, true, static_cast<int>(batch), static_cast<int>(out_), static_cast<int>(in_), 1.0f,
       x.f32(), static_cast<int>(in_), weight_.value.f32(), static_cast<int>(in_), 0.0f, y,
       static_cast<int>(out_));
  add_row_bias(static_cast<size_t>(batch), out_, bias_.value.f32(), y);
  return output_;
}

const Tensor& Linear::forward_bf16(const Tensor& x) {
  const Device d = x.device();
  const int64_t batch = x.dim(0);
  input_dtype_ = x.dtype();
  if (x.dtype() == DType::bf16) {
    input_ = x;
  } else {
    ensure_like(input16_, x, DType::bf16, d);
    cast_into(x, input16_);
    input_ = input16_;
  }
  ensure_like(weight16_, weight_.value, DType::bf16, d);
  ensure_like(bias16_, bias_.value, DType::bf16, d);
  cast_into(weight_.value, weight16_);
  cast_into(bias_.value, bias16_);
  ensure_2d(output_, batch, static_cast<int64_t>(out_), DType::bf16, d);
  if (batch == 0) return output_;
  const int in = static_cast<int>(in_), out = static_cast<int>(out_);
  // y = x W^T + b, rounded once to bfloat16 (the bias in the GEMM's epilogue).
  gemm16(d, false, true, static_cast<int>(batch), out, in, input_, in, weight16_, in, 0.0f, output_,
         out, &bias16_);
  return output_;
}

const Tensor& Linear::backward(const Tensor& grad_output) {
  DP_CHECK(input_.defined(), "{}: backward called before forward", name_);
  const int64_t batch = input_.dim(0);
  DP_CHECK(grad_output.defined() &&
               (grad_output.dtype() == DType::f32 || grad_output.dtype() == DType::bf16) &&
               grad_output.ndim() == 2 && grad_output.dim(0) == batch &&
               static_cast<size_t>(grad_output.dim(1)) == out_,
           "{}: grad_output is {}, expected [{}, {}] (the shape of the last output)", name_,
           grad_output.defined() ? grad_output.str() : "undefined", batch, out_);
  // The Reducer may have re-pointed grad into a bucket; a wrong-sized view there would be
  // silent memory corruption.
  DP_CHECK(weight_.grad.numel() == out_ * in_ && bias_.grad.numel() == out_,
           "{}: gradient buffers are {} and {}, expected {} and {} elements", name_,
           weight_.grad.str(), bias_.grad.str(), out_ * in_, out_);
  check_grad_device(name_, input_, grad_output);
  // The Reducer or Module::to() may have moved the gradients since forward.
  check_param_device(name_, input_, weight_);
  check_param_device(name_, input_, bias_);
  if (output_.dtype() == DType::bf16) return backward_bf16(grad_output);
  DP_CHECK(grad_output.dtype() == DType::f32, "{}: grad_output is {}, expected float32", name_,
           grad_output.str());
  const bool on_gpu = input_.is_cuda();
  const int device = input_.device().index;
  const int b = static_cast<int>(batch);
  const int in = static_cast<int>(in_);
  const int out = static_cast<int>(out_);
  const float* dy = grad_output.f32();

  // dW[out, in] += dy^T[out, B] x[B, in]; db[out] += column sums of dy.
  // On a GPU these are only enqueued when grad_ready() fires: a hook that reads the gradient
  // on another stream (a collective) must first wait for an event recorded on
  // compute_stream(device); work on the compute stream itself is ordered by issue order.
  if (batch > 0 && on_gpu) {
    gpu::gemm_f32(device, true, false, out, in, b, 1.0f, dy, out, input_.f32(), in, 1.0f,
                  weight_.grad.f32(), in, nullptr);
    gpu::col_sum_accumulate(device, static_cast<size_t>(batch), out_, dy, bias_.grad.f32());
  } else if (batch > 0) {
    gemm(true, false, out, in, b, 1.0f, dy, out, input_.f32(), in, 1.0f, weight_.grad.f32(), in);
    col_sum_accumulate(static_cast<size_t>(batch), out_, dy, bias_.grad.f32());
  }
  weight_.grad_ready();
  bias_.grad_ready();

  if (!needs_input_grad_) return no_grad_;
  // dx[B, in] = dy[B, out] W[out, in].
  ensure_2d(grad_input_, batch, static_cast<int64_t>(in_), DType::f32, input_.device());
  if (batch > 0 && on_gpu)
    gpu::gemm_f32(device, false, false, b, in, out, 1.0f, dy, out, weight_.value.f32(), in, 0.0f,
                  grad_input_.f32(), in, nullptr);
  else if (batch > 0)
    gemm(false, false, b, in, out, 1.0f, dy, out, weight_.value.f32(), in, 0.0f, grad_input_.f32(),
         in);
  return grad_input_;
}

const Tensor& Linear::backward_bf16(const Tensor& grad_output) {
  const Device d = input_.device();
  const int64_t batch = input_.dim(0);
  const Tensor* dy = &grad_output;
  if (grad_output.dtype() == DType::f32) {
    ensure_like(grad16_, grad_output, DType::bf16, d);
    cast_into(grad_output, grad16_);
    dy = &grad16_;
  }
  const int b = static_cast<int>(batch), in = static_cast<int>(in_), out = static_cast<int>(out_);
  // dW += dy^T x and db += column sums of dy, accumulated into the float32 master gradients
  // (which may be views into a Reducer bucket), then signalled, as in float32.
  if (batch > 0) {
    gemm16(d, true, false, out, in, b, *dy, out, input_, in, 1.0f, weight_.grad, in, nullptr);
    if (d.is_cuda())
      gpu::col_sum_accumulate_bf16(d.index, static_cast<size_t>(batch), out_, dy->data<bf16>(),
                                   bias_.grad.f32());
    else
      col_sum_accumulate_bf16(static_cast<size_t>(batch), out_, dy->data<bf16>(), bias_.grad.f32());
  }
  weight_.grad_ready();
  bias_.grad_ready();

  if (!needs_input_grad_) return no_grad_;
  // dx = dy W with the forward's bfloat16 W, in the dtype the input came in.
  ensure_2d(grad_input_, batch, static_cast<int64_t>(in_), input_dtype_, d);
  if (batch > 0)
    gemm16(d, false, false, b, in, out, *dy, out, weight16_, in, 0.0f, grad_input_, in, nullptr);
  return grad_input_;
}

}  // namespace dp
