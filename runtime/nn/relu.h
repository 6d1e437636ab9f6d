#pragma once
#include <string>

#include "runtime/nn/module.h"

namespace dp {

// y = max(x, 0), element-wise on a float tensor of any shape. No parameters.
class ReLU : public Module {
 public:
  explicit ReLU(std::string name) : Module(std::move(name)) {}

  const Tensor& forward(const Tensor& x) override;
  // dx = dy where the forward input was > 0, else 0 (the gradient at exactly 0 is 0, as
  // in PyTorch).
  const Tensor& backward(const Tensor& grad_output) override;

 private:
  Tensor input_;       // handle to the last forward's input (no copy)
  Tensor output_;      // reused while the input shape stays the same
  Tensor grad_input_;  // reused while the input shape stays the same
  Tensor no_grad_;     // stays undefined
};

}  // namespace dp
