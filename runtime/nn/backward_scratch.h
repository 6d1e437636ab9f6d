#pragma once
#include <memory>

#include "runtime/core/tensor.h"

namespace dp {

class Module;

// A tensor a layer writes in backward and nobody reads once the backward of the module that
// consumes it has returned: a layer's input gradient, the gradient converted to the compute
// dtype. Modules of one structure whose backward calls never overlap can share theirs
// (Module::share_backward_scratch), as llm.c keeps one set of activation gradients for all
// its layers: GPT's blocks hold one set instead of one each.
//
// A layer declares one as a member, `BackwardScratch grad_input_{*this};`: it registers itself
// with its module as it is built, so none can be left out of the sharing.
class BackwardScratch {
 public:
  explicit BackwardScratch(Module& owner);
  BackwardScratch(const BackwardScratch&) = delete;
  BackwardScratch& operator=(const BackwardScratch&) = delete;

  Tensor& operator*() { return *slot_; }
  const Tensor& operator*() const { return *slot_; }
  // From now on this scratch is `owner`'s (what this one held is dropped with it).
  void share(const BackwardScratch& owner) { slot_ = owner.slot_; }

 private:
  std::shared_ptr<Tensor> slot_ = std::make_shared<Tensor>();
};

}  // namespace dp
