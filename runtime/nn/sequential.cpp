#include "runtime/nn/sequential.h"

namespace dp {

Sequential::Sequential(std::string name) : Module(std::move(name)) {
  needs_input_grad_ = false;
}

Module& Sequential::add(std::unique_ptr<Module> child) {
  DP_CHECK(child != nullptr, "{}: add() got a null module", name_);
  for (const auto& c : children_)
    DP_CHECK(c.get() != child.get() && c->name() != child->name(),
             "{}: a child named '{}' was already added", name_, child->name());
  child->set_compute_dtype(compute_dtype_);
  children_.push_back(std::move(child));
  return *children_.back();
}

Module& Sequential::child(size_t i) {
  DP_CHECK(i < children_.size(), "{}: child {} requested, it has {}", name_, i, children_.size());
  return *children_[i];
}

const Tensor& Sequential::forward(const Tensor& x) {
  DP_CHECK(!children_.empty(), "{}: forward through an empty Sequential", name_);
  // Re-applied every step because set_needs_input_grad is not virtual: a later change of
  // this container's flag must still reach the first child. Every later child must pass
  // the gradient on (this also switches a nested Sequential's default off-flag back on).
  children_.front()->set_needs_input_grad(needs_input_grad_);
  for (size_t i = 1; i < children_.size(); ++i) children_[i]->set_needs_input_grad(true);
  const Tensor* h = &x;
  for (auto& c : children_) h = &c->forward(*h);
  return *h;
}

const Tensor& Sequential::backward(const Tensor& grad_output) {
  DP_CHECK(!children_.empty(), "{}: backward through an empty Sequential", name_);
  const Tensor* g = &grad_output;
  for (size_t i = children_.size(); i-- > 0;) g = &children_[i]->backward(*g);
  return *g;
}

void Sequential::set_compute_dtype(DType dtype) {
  Module::set_compute_dtype(dtype);
  for (auto& c : children_) c->set_compute_dtype(dtype);
}

std::vector<Parameter*> Sequential::parameters() {
  std::vector<Parameter*> out;
  for (auto& c : children_) {
    std::vector<Parameter*> p = c->parameters();
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

}  // namespace dp
