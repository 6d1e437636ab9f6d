#pragma once
#include <memory>
#include <string>
#include <vector>

#include "runtime/nn/module.h"

namespace dp {

// Children run in order in forward and in reverse in backward. The container's own
// needs_input_grad() (false by default: a model's input is data, not a variable) is what
// its first child gets, so the first Linear skips its input-gradient GEMM.
class Sequential : public Module {
 public:
  explicit Sequential(std::string name);

  // Appends a child and returns it (e.g. to keep a typed pointer).
  Module& add(std::unique_ptr<Module> child);

  const Tensor& forward(const Tensor& x) override;
  const Tensor& backward(const Tensor& grad_output) override;

  size_t size() const { return owned_.size(); }
  Module& child(size_t i);

 private:
  std::vector<std::unique_ptr<Module>> owned_;
};

}  // namespace dp
