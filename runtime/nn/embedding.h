#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/nn/module.h"

namespace dp {

// A lookup table: int32 indices of any shape [...] -> their rows [..., dim] of the weight
// [num, dim], in the compute dtype (the table and its gradient stay float32). The weight is
// "<name>.weight" unless `weight_name` says otherwise (GPT-2 calls its tables "wte", "wpe"),
// initialised N(0, init_std^2) from (seed, its name).
//
// Backward scatter-adds grad_output into the weight's gradient (rows in index order: the
// same bits every run), then calls grad_ready(). Indices are data: there is no input
// gradient, and backward returns an undefined tensor. An index outside [0, num) is a
// dp::Error naming the layer, the index and its position.
class Embedding : public Module {
 public:
  Embedding(std::string name, size_t num, size_t dim, uint64_t seed, float init_std = 0.02f,
            std::string weight_name = "");

  const Tensor& forward(const Tensor& indices) override;
  const Tensor& backward(const Tensor& grad_output) override;

  Parameter& weight() { return weight_; }
  size_t num() const { return num_; }
  size_t dim() const { return dim_; }

 private:
  size_t num_;
  size_t dim_;
  Parameter weight_;
  Tensor indices_;  // handle to the last forward's indices
  Tensor output_;
  Tensor flag_;  // GPU: where the kernel reports a bad index
  Tensor no_grad_;
};

}  // namespace dp
