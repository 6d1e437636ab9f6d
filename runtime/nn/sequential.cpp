#include "runtime/nn/sequential.h"

namespace dp {

Sequential::Sequential(std::string name) : Module(std::move(name)) {
  needs_input_grad_ = false;
}

Module& Sequential::add(std::unique_ptr<Module> child) {
  DP_CHECK(child != nullptr, "{}: add() got a null module", name_);
  for (const auto& c : owned_)
    DP_CHECK(c.get() != child.get() && c->name() != child->name(),
             "{}: a child named '{}' was already added", name_, child->name());
  child->set_compute_dtype(compute_dtype_);
  child->train(training_);
  register_module(*child);
  owned_.push_back(std::move(child));
  return *owned_.back();
}

Module& Sequential::child(size_t i) {
  DP_CHECK(i < owned_.size(), "{}: child {} requested, it has {}", name_, i, owned_.size());
  return *owned_[i];
}

const Tensor& Sequential::forward(const Tensor& x) {
  DP_CHECK(!owned_.empty(), "{}: forward through an empty Sequential", name_);
  // Re-applied every step because set_needs_input_grad is not virtual: a later change of
  // this container's flag must still reach the first child. Every later child must pass
  // the gradient on (this also switches a nested Sequential's default off-flag back on).
  owned_.front()->set_needs_input_grad(needs_input_grad_);
  for (size_t i = 1; i < owned_.size(); ++i) owned_[i]->set_needs_input_grad(true);
  const Tensor* h = &x;
  for (auto& c : owned_) h = &c->forward(*h);
  return *h;
}

const Tensor& Sequential::backward(const Tensor& grad_output) {
  DP_CHECK(!owned_.empty(), "{}: backward through an empty Sequential", name_);
  const Tensor* g = &grad_output;
  for (size_t i = owned_.size(); i-- > 0;) g = &owned_[i]->backward(*g);
  return *g;
}

}  // namespace dp
