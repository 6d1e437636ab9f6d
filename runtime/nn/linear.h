#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/nn/module.h"

namespace dp {

// y = x W^T + b with PyTorch's layouts: x [B, in], weight [out, in], bias [out], y [B, out].
// Parameters are "<name>.weight" then "<name>.bias", initialised as torch.nn.Linear does
// (runtime/nn/init.h) from `seed`.
//
// With compute dtype bfloat16 (mixed precision) the layer keeps float32 master parameters
// and gradients but runs its three GEMMs on bfloat16 operands with float32 accumulation,
// like torch.autocast: forward casts W and b (each step: the optimizer changed them) and a
// float32 input to bfloat16 and writes a bfloat16 output; backward takes a bfloat16
// grad_output, accumulates dW and db in float32 and returns dx in the input's dtype.
class Linear : public Module {
 public:
  Linear(std::string name, size_t in_features, size_t out_features, uint64_t seed);

  const Tensor& forward(const Tensor& x) override;
  // Writes dW and db first and signals them ready, THEN computes dx: the Reducer can
  // launch this layer's bucket while the input-gradient GEMM is still running.
  const Tensor& backward(const Tensor& grad_output) override;
  std::vector<Parameter*> parameters() override { return {&weight_, &bias_}; }

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  size_t in_features() const { return in_; }
  size_t out_features() const { return out_; }

 private:
  size_t in_;
  size_t out_;
  Parameter weight_;
  Parameter bias_;
  const Tensor& forward_bf16(const Tensor& x);
  const Tensor& backward_bf16(const Tensor& grad_output);

  Tensor input_;       // handle to the last forward's input (shared storage, no copy)
  Tensor output_;      // [B, out], reused while B stays the same
  Tensor grad_input_;  // [B, in], reused while B stays the same
  Tensor no_grad_;     // stays undefined: what backward returns when the input needs none
  // bfloat16 compute: the input's dtype (dx is returned in it), the input converted to
  // bfloat16 when it came as float32, the step's bfloat16 copies of W and b, and
  // grad_output converted to bfloat16 when it came as float32.
  DType input_dtype_ = DType::f32;
  Tensor input16_;
  Tensor weight16_;
  Tensor bias16_;
  Tensor grad16_;
};

}  // namespace dp
