#include "runtime/nn/cross_entropy.h"

#include <cmath>

namespace dp {

namespace {

void ensure_like(Tensor& buf, const Tensor& like) {
  if (buf.defined() && buf.dtype() == like.dtype() && buf.shape() == like.shape()) return;
  buf = Tensor::zeros(like.shape(), like.dtype());
}

}  // namespace

float SoftmaxCrossEntropy::forward(const Tensor& logits, const Tensor& labels) {
  DP_CHECK(logits.defined() && logits.dtype() == DType::f32 && logits.ndim() == 2,
           "{}: expected float32 logits of shape [batch, classes], got {}", name_,
           logits.defined() ? logits.str() : "an undefined tensor");
  const int64_t batch = logits.dim(0);
  const int64_t classes = logits.dim(1);
  DP_CHECK(batch > 0 && classes > 0, "{}: logits {} are empty", name_, logits.str());
  DP_CHECK(labels.defined() && labels.dtype() == DType::i32 && labels.ndim() == 1 &&
               labels.dim(0) == batch,
           "{}: expected int32 labels of shape [{}], got {}", name_, batch,
           labels.defined() ? labels.str() : "an undefined tensor");
  const int32_t* y = labels.data<int32_t>();
  // Checked up front so that a bad label never leaves a half-written state behind.
  for (int64_t r = 0; r < batch; ++r)
    DP_CHECK(y[r] >= 0 && y[r] < classes,
             "{}: label {} at batch index {} is out of range for {} classes (expected 0..{})",
             name_, y[r], r, classes, classes - 1);

  // Copied (B ints), not kept as a handle: a loader may refill its label buffer for the
  // next batch before this backward runs.
  ensure_like(labels_, labels);
  labels_.copy_(labels);
  ensure_like(probs_, logits);
  const size_t c = static_cast<size_t>(classes);
  const float* x = logits.f32();
  float* p = probs_.f32();
  double total = 0;
  size_t correct = 0;
  for (int64_t r = 0; r < batch; ++r) {
    const float* xr = x + static_cast<size_t>(r) * c;
    float* pr = p + static_cast<size_t>(r) * c;
    size_t arg = 0;
    for (size_t j = 1; j < c; ++j)
      if (xr[j] > xr[arg]) arg = j;
    const float mx = xr[arg];
    double sum = 0;
    for (size_t j = 0; j < c; ++j) {
      pr[j] = std::exp(xr[j] - mx);
      sum += pr[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (size_t j = 0; j < c; ++j) pr[j] *= inv;
    // -log softmax[label] = log(sum) - (x[label] - max)
    total += std::log(sum) - (double(xr[y[r]]) - mx);
    if (static_cast<int32_t>(arg) == y[r]) ++correct;
  }
  correct_ = correct;
  return static_cast<float>(total / static_cast<double>(batch));
}

const Tensor& SoftmaxCrossEntropy::backward(float scale) {
  DP_CHECK(labels_.defined(), "{}: backward called before forward", name_);
  ensure_like(grad_, probs_);
  const size_t batch = static_cast<size_t>(probs_.dim(0));
  const size_t c = static_cast<size_t>(probs_.dim(1));
  const float k = scale / static_cast<float>(batch);
  const float* p = probs_.f32();
  const int32_t* y = labels_.data<int32_t>();
  float* g = grad_.f32();
  for (size_t r = 0; r < batch; ++r) {
    for (size_t j = 0; j < c; ++j) g[r * c + j] = k * p[r * c + j];
    g[r * c + static_cast<size_t>(y[r])] -= k;
  }
  return grad_;
}

}  // namespace dp
