#pragma once
#include <cstddef>
#include <string>

#include "runtime/nn/module.h"

namespace dp {

// LayerNorm over the last dimension (torch.nn.LayerNorm(dim, eps)): "<name>.weight" (ones)
// and "<name>.bias" (zeros), [dim]. Input [..., dim] in float32 or bfloat16; the output is
// in the compute dtype, the mean and 1/std per row in float32 whatever the compute dtype.
// Backward accumulates the parameter gradients in float32 and returns dx in the input's dtype.
class LayerNorm : public Module {
 public:
  LayerNorm(std::string name, size_t dim, float eps = 1e-5f);

  const Tensor& forward(const Tensor& x) override;
  // One pass writes dx and the parameter gradients, which are then signalled ready.
  const Tensor& backward(const Tensor& grad_output) override;

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  size_t dim() const { return dim_; }
  float eps() const { return eps_; }

 private:
  size_t dim_;
  float eps_;
  Parameter weight_;
  Parameter bias_;
  Tensor input_;  // handle to the last forward's input in the compute dtype
  DType input_dtype_ = DType::f32;
  Tensor output_, mean_, rstd_;
  BackwardScratch grad_input_{*this};      // in the compute dtype
  BackwardScratch grad_input_out_{*this};  // converted to the input's dtype when that differs
  BackwardScratch grad16_{*this};
  BackwardScratch scratch_{*this};  // GPU: the backward kernel's [rows, cols] partial sums
  Tensor input16_;
  Tensor no_grad_;
};

}  // namespace dp
