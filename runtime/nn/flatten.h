#pragma once
#include <string>

#include "runtime/nn/module.h"

namespace dp {

// [B, d1, d2, ...] -> [B, d1 * d2 * ...] as a view of the input (no copy: tensors are
// contiguous); backward views the gradient back in the input's shape. No parameters.
class Flatten : public Module {
 public:
  explicit Flatten(std::string name) : Module(std::move(name)) {}

  const Tensor& forward(const Tensor& x) override;
  const Tensor& backward(const Tensor& grad_output) override;

 private:
  Shape input_shape_;
  Tensor output_, grad_input_, no_grad_;
};

}  // namespace dp
