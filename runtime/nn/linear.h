#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/nn/module.h"

namespace dp {

// y = x W^T + b with PyTorch's layouts: x [..., in], weight [out, in], bias [out],
// y [..., out] (leading dimensions, e.g. [B, T] of a transformer, pass through).
// Parameters are "<name>.weight" then "<name>.bias", initialised as torch.nn.Linear does
// (runtime/nn/init.h) from `seed`; `bias` false leaves the bias out.
//
// With compute dtype bfloat16 (mixed precision) the layer keeps float32 master parameters
// and gradients but runs its three GEMMs on bfloat16 operands with float32 accumulation,
// like torch.autocast: forward casts W and b (each step: the optimizer changed them) and a
// float32 input to bfloat16 and writes a bfloat16 output; backward takes a bfloat16
// grad_output, accumulates dW and db in float32 and returns dx in the input's dtype.
class Linear : public Module {
 public:
  Linear(std::string name, size_t in_features, size_t out_features, uint64_t seed,
         bool bias = true);

  const Tensor& forward(const Tensor& x) override;
  // Writes dW and db first and signals them ready, THEN computes dx: the Reducer can
  // launch this layer's bucket while the input-gradient GEMM is still running.
  const Tensor& backward(const Tensor& grad_output) override;

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  bool has_bias() const { return has_bias_; }
  size_t in_features() const { return in_; }
  size_t out_features() const { return out_; }

 private:
  size_t in_;
  size_t out_;
  bool has_bias_;
  Parameter weight_;
  Parameter bias_;

  Tensor input_;   // handle to the last forward's input in the compute dtype (no copy in fp32)
  Tensor output_;  // [..., out], reused while the shape stays the same
  BackwardScratch grad_input_{*this};  // [..., in], in the dtype the input came in
  Tensor no_grad_;  // stays undefined: what backward returns when the input needs none
  DType input_dtype_ = DType::f32;
  const Tensor* w_ = nullptr;  // the forward's weight in the compute dtype
  // bfloat16 compute: the input, W, b and grad_output converted where they came as float32.
  Tensor input16_, weight16_, bias16_;
  BackwardScratch grad16_{*this};
};

}  // namespace dp
