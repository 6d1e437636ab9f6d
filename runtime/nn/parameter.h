#pragma once
#include <functional>
#include <string>

#include "runtime/core/tensor.h"

namespace dp {

// A trainable tensor and its gradient. The gradient tensor may be re-pointed by the
// Reducer into a bucket's flat buffer; layers only ever write through `grad`, so they do
// not know or care. Layers ACCUMULATE into grad (grad += ...), as PyTorch does, which is
// what makes gradient accumulation (no_sync) and shared parameters free: zero_grad() clears
// it per cycle, and every use of a shared parameter adds its part.
struct Parameter {
  std::string name;  // dotted, unique in the model: "fc1.weight"
  Tensor value;
  Tensor grad;
  // Called once per backward, after the LAST use of this parameter wrote its gradient: the
  // Reducer's hook that may launch this parameter's bucket while backward goes on.
  std::function<void(Parameter&)> on_grad_ready;

  Parameter(std::string n, const Shape& shape)
      : name(std::move(n)), value(Tensor::zeros(shape)), grad(Tensor::zeros(shape)) {}

  // A parameter used by several modules (GPT's token embedding is also its output head) is
  // owned and registered by one of them; each further user calls add_use() once, so that
  // a backward reports it ready only after every use has added its gradient.
  void add_use() { pending_ = ++uses_; }
  int uses() const { return uses_; }
  // Layers call this right after writing their part of the gradient.
  void grad_ready() {
    if (--pending_ > 0) return;
    pending_ = uses_;
    if (on_grad_ready) on_grad_ready(*this);
  }
  // Forgets the uses counted so far (a backward that was abandoned midway).
  void reset_uses() { pending_ = uses_; }
  // Some uses, not all, added their gradient in this backward: a module that skips one use
  // of a tied weight in a step (the Reducer takes the gradient as it is at finish()).
  bool partly_used() const { return pending_ < uses_; }

 private:
  int uses_ = 1;
  int pending_ = 1;
};

// State a module keeps that is not trained (BatchNorm's running mean and variance): no
// gradient, never touched by the optimizer, but part of the model. Under DDP rank 0's
// buffers are broadcast before every forward (PyTorch's broadcast_buffers), and they are
// part of the replica check, the parameter dump and checkpoints.
struct Buffer {
  std::string name;  // dotted, unique in the model: "bn1.running_mean"
  Tensor value;

  Buffer(std::string n, const Shape& shape, DType dtype = DType::f32)
      : name(std::move(n)), value(Tensor::zeros(shape, dtype)) {}
};

}  // namespace dp
