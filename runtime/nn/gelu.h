#pragma once
#include <string>

#include "runtime/nn/module.h"

namespace dp {

// GPT-2's GELU, the tanh approximation (torch.nn.GELU(approximate="tanh")), element-wise:
//   0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// Computes in the compute dtype (float32 math either way); dx comes back in the input's dtype.
class GELU : public Module {
 public:
  explicit GELU(std::string name) : Module(std::move(name)) {}

  const Tensor& forward(const Tensor& x) override;
  const Tensor& backward(const Tensor& grad_output) override;

 private:
  Tensor input_;  // handle to the last forward's input in the compute dtype
  DType input_dtype_ = DType::f32;
  Tensor output_, input16_;
  BackwardScratch grad_input_{*this}, grad_input_out_{*this}, grad16_{*this};
  Tensor no_grad_;
};

}  // namespace dp
