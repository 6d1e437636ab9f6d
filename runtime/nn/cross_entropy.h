#pragma once
#include <cstddef>
#include <string>

#include "runtime/core/tensor.h"

namespace dp {

// Softmax followed by the negative log-likelihood, averaged over the batch: PyTorch's
// F.cross_entropy(logits, labels, reduction="mean"). Not a Module: it takes labels and
// returns a scalar, and its backward needs no upstream gradient.
class SoftmaxCrossEntropy {
 public:
  explicit SoftmaxCrossEntropy(std::string name = "loss") : name_(std::move(name)) {}

  // logits float32 or bfloat16 [B, C] (bfloat16 is widened: the loss is computed in
  // float32), labels int32 [B] in [0, C). Returns the mean loss, computed
  // with a max-shifted log-sum-exp so that large logits do not overflow.
  // CUDA logits: computed on their device; labels may be on the host or on that device (they
  // are copied to a device buffer of the loss). Returning the loss as a host float
  // SYNCHRONISES with the device's compute stream (the step's one sync); an out-of-range
  // device label is reported then, as a dp::Error.
  float forward(const Tensor& logits, const Tensor& labels);
  // How many rows of the last forward had argmax(logits) == label (first maximum on ties).
  size_t correct() const { return correct_; }
  // d(scale * loss)/d(logits) = scale * (softmax - onehot) / B for the last forward, in the
  // dtype the logits came in.
  // `scale` folds in an upstream factor (e.g. 1/accumulation_steps) at no extra pass.
  // Once per forward: on the CPU the gradient overwrites the probabilities (one [B, C]
  // buffer instead of two); a second call is an error.
  const Tensor& backward(float scale = 1.0f);
  // Frees the [B, C] buffers (the next forward allocates them again): a caller that runs
  // another loss meanwhile (the evaluation) need not hold both.
  void release_buffers();

  const std::string& name() const { return name_; }

 private:
  float forward_cuda(const Tensor& logits, const Tensor& labels);
  void backward_cpu(float scale);

  std::string name_;
  Tensor labels_;  // copy of the last forward's labels, [B]
  Tensor probs_;   // softmax of the last forward, [B, C]; on the CPU, backward's gradient
  Tensor grad_;    // CUDA: the gradient [B, C], reused while the shape stays the same
  bool backward_done_ = false;
  // bfloat16 logits: their float32 copy (CUDA; the CPU widens them into probs_), and the
  // gradient converted back to bfloat16.
  DType logits_dtype_ = DType::f32;
  Tensor logits32_;
  Tensor grad16_;
  // CUDA only: each row's loss [B] and the kernel's stats (dp::cuda::CrossEntropyStats).
  Tensor row_loss_;
  Tensor stats_;
  size_t correct_ = 0;
};

}  // namespace dp
