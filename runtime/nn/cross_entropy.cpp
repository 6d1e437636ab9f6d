#include "runtime/nn/cross_entropy.h"

#include <cmath>

#include "runtime/nn/buffers.h"
#include "runtime/ops/cast.h"
#include "runtime/ops/cpu/softmax.h"
#include "runtime/ops/device_ops.h"

namespace dp {

float SoftmaxCrossEntropy::forward(const Tensor& logits_in, const Tensor& labels) {
  DP_CHECK(logits_in.defined() &&
               (logits_in.dtype() == DType::f32 || logits_in.dtype() == DType::bf16) &&
               logits_in.ndim() == 2,
           "{}: expected float32 or bfloat16 logits of shape [batch, classes], got {}", name_,
           logits_in.defined() ? logits_in.str() : "an undefined tensor");
  // bfloat16 logits (mixed precision) are widened first: the softmax, the log and the
  // loss are computed in float32, as torch.autocast does for cross_entropy.
  // On the CPU they are widened straight into the probabilities' buffer, where the softmax
  // then runs in place: a float32 copy beside it cost another [B, C] (785 MiB for GPT-2's
  // vocabulary at 4 x 1024 tokens), and bfloat16 training used more memory than float32.
  const DType in_dtype = logits_in.dtype();
  Tensor* widened = nullptr;
  if (in_dtype == DType::bf16) {
    widened = logits_in.is_cuda() ? &logits32_ : &probs_;
    ensure_like(*widened, logits_in, DType::f32, logits_in.device());
    cast_into(logits_in, *widened);
  }
  const Tensor& logits = widened ? *widened : logits_in;
  logits_dtype_ = in_dtype;
  backward_done_ = true;  // until this forward succeeds: its checks may fail after the widening
  const int64_t batch = logits.dim(0);
  const int64_t classes = logits.dim(1);
  DP_CHECK(batch > 0 && classes > 0, "{}: logits {} are empty", name_, logits.str());
  DP_CHECK(labels.defined() && labels.dtype() == DType::i32 && labels.ndim() == 1 &&
               labels.dim(0) == batch,
           "{}: expected int32 labels of shape [{}], got {}", name_, batch,
           labels.defined() ? labels.str() : "an undefined tensor");
  // Host labels are checked up front so that a bad label never leaves a half-written state
  // behind. Device labels cannot be (that would cost a copy and a sync): the CUDA kernel
  // reports the first bad one instead, and its backward ignores it (no write out of bounds).
  if (!labels.is_cuda()) {
    const int32_t* y = labels.data<int32_t>();
    for (int64_t r = 0; r < batch; ++r)
      DP_CHECK(y[r] >= 0 && y[r] < classes,
               "{}: label {} at batch index {} is out of range for {} classes (expected 0..{})",
               name_, y[r], r, classes, classes - 1);
  }
  if (logits.is_cuda()) return forward_cuda(logits, labels);
  // CPU logits with labels on a GPU (unusual): one host copy per step, then the checks above.
  if (labels.is_cuda()) {
    const float l = forward(logits, labels.to(Device::cpu()));
    logits_dtype_ = in_dtype;  // the gradient goes back in the dtype the logits came in
    return l;
  }
  const int32_t* y = labels.data<int32_t>();

  // Copied (B ints), not kept as a handle: a loader may refill its label buffer for the
  // next batch before this backward runs.
  ensure_like(labels_, labels, DType::i32, Device::cpu());
  labels_.copy_(labels);
  ensure_like(probs_, logits, DType::f32, Device::cpu());
  const size_t c = static_cast<size_t>(classes);
  const float* x = logits.f32();
  float* p = probs_.f32();
  double total = 0;
  size_t correct = 0;
  for (int64_t r = 0; r < batch; ++r) {
    const float* xr = x + static_cast<size_t>(r) * c;
    const float x_label = xr[y[r]];  // before an in-place softmax overwrites it
    const SoftmaxRow row = softmax_row(c, xr, p + static_cast<size_t>(r) * c);
    total += std::log(row.sum) - (double(x_label) - row.max);
    if (static_cast<int32_t>(row.argmax) == y[r]) ++correct;
  }
  correct_ = correct;
  backward_done_ = false;
  return static_cast<float>(total / static_cast<double>(batch));
}

float SoftmaxCrossEntropy::forward_cuda(const Tensor& logits, const Tensor& labels) {
  const Device device = logits.device();
  const int64_t batch = logits.dim(0);
  const int64_t classes = logits.dim(1);
  // Copied into a device buffer of our own whichever side they come from: a host label
  // buffer is staged by the copy before it returns, a device one may be refilled by the
  // loader before backward runs. Ordered on the compute stream before the kernels.
  ensure_like(labels_, labels, DType::i32, device);
  labels_.copy_(labels);
  ensure_like(probs_, logits, DType::f32, device);
  ensure_1d(row_loss_, batch, DType::f32, device);
  static_assert(gpu::kCrossEntropyStatsBytes == 4 * sizeof(int32_t), "stats are 4 words");
  ensure_1d(stats_, 4, DType::i32, device);
  // Synchronises: the mean loss is read back to the host (the CPU path returns it too).
  const gpu::CrossEntropyResult r = gpu::softmax_cross_entropy_forward(
      device.index, batch, classes, logits.f32(), labels_.data<int32_t>(), probs_.f32(),
      row_loss_.f32(), stats_.raw());
  DP_CHECK(r.bad_row < 0,
           "{}: label {} at batch index {} is out of range for {} classes (expected 0..{})", name_,
           r.bad_label, r.bad_row, classes, classes - 1);
  correct_ = static_cast<size_t>(r.correct);
  backward_done_ = false;
  return r.mean_loss;
}

const Tensor& SoftmaxCrossEntropy::backward(float scale) {
  DP_CHECK(labels_.defined(), "{}: backward called before forward", name_);
  DP_CHECK(!backward_done_,
           "{}: backward called twice after one forward (the first overwrote the "
           "probabilities with the gradient), or after a forward that failed; run forward again",
           name_);
  Tensor* grad = &probs_;  // CPU: in place, the probabilities are not read again
  if (probs_.is_cuda()) {
    ensure_like(grad_, probs_);
    gpu::softmax_cross_entropy_backward(probs_.device().index, probs_.dim(0), probs_.dim(1),
                                        probs_.f32(), labels_.data<int32_t>(), scale, grad_.f32());
    grad = &grad_;
  } else {
    backward_cpu(scale);
    backward_done_ = true;
  }
  if (logits_dtype_ == DType::f32) return *grad;
  // The gradient goes back in the logits' dtype, as the backward of autocast's cast does.
  ensure_like(grad16_, *grad, logits_dtype_, grad->device());
  cast_into(*grad, grad16_);
  return grad16_;
}

void SoftmaxCrossEntropy::release_buffers() {
  probs_ = Tensor();
  grad_ = Tensor();
  logits32_ = Tensor();
  grad16_ = Tensor();
  labels_ = Tensor();
}

void SoftmaxCrossEntropy::backward_cpu(float scale) {
  const size_t batch = static_cast<size_t>(probs_.dim(0));
  const size_t c = static_cast<size_t>(probs_.dim(1));
  const float k = scale / static_cast<float>(batch);
  const int32_t* y = labels_.data<int32_t>();
  float* g = probs_.f32();
  for (size_t r = 0; r < batch; ++r) {
    for (size_t j = 0; j < c; ++j) g[r * c + j] *= k;
    g[r * c + static_cast<size_t>(y[r])] -= k;
  }
}

}  // namespace dp
