#pragma once
#include <functional>
#include <string>

#include "runtime/core/tensor.h"

namespace dp {

// A trainable tensor and its gradient. The gradient tensor may be re-pointed by the
// Reducer into a bucket's flat buffer; layers only ever write through `grad`, so they do
// not know or care. Layers ACCUMULATE into grad (grad += ...), as PyTorch does, which is
// what makes gradient accumulation (no_sync) free: zero_grad() clears it per cycle.
struct Parameter {
  std::string name;  // dotted, unique in the model: "fc1.weight"
  Tensor value;
  Tensor grad;
  // Called by the layer right after it finished writing this gradient in backward: the
  // Reducer's hook that may launch this parameter's bucket while backward goes on.
  std::function<void(Parameter&)> on_grad_ready;

  Parameter(std::string n, const Shape& shape)
      : name(std::move(n)), value(Tensor::zeros(shape)), grad(Tensor::zeros(shape)) {}
  void grad_ready() {
    if (on_grad_ready) on_grad_ready(*this);
  }
};

}  // namespace dp
