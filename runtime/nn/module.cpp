#include "runtime/nn/module.h"

#include <algorithm>
#include <string>
#include <typeinfo>
#include <unordered_set>

namespace dp {

Parameter& Module::register_parameter(Parameter& p) {
  own_params_.push_back(&p);
  return p;
}

Buffer& Module::register_buffer(Buffer& b) {
  own_buffers_.push_back(&b);
  return b;
}

BackwardScratch::BackwardScratch(Module& owner) {
  owner.own_scratch_.push_back(this);
}

const Module* Module::first_difference(const Module& other) const {
  if (typeid(*this) != typeid(other) || own_scratch_.size() != other.own_scratch_.size() ||
      children_.size() != other.children_.size())
    return this;
  for (size_t i = 0; i < children_.size(); ++i) {
    if (const Module* d = children_[i]->first_difference(*other.children_[i])) return d;
  }
  return nullptr;
}

void Module::share_backward_scratch(Module& other) {
  // Checked over the whole tree first, so that a refusal leaves both as they were.
  const Module* d = first_difference(other);
  DP_CHECK(d == nullptr,
           "{} and {} cannot share backward scratch: they are not built the same way ({} "
           "differs from its counterpart in type, children or scratch tensors)",
           name_, other.name_, d != nullptr ? d->name_ : "");
  share_scratch_with(other);
}

void Module::share_scratch_with(Module& other) {
  for (size_t i = 0; i < children_.size(); ++i)
    children_[i]->share_scratch_with(*other.children_[i]);
  for (size_t i = 0; i < own_scratch_.size(); ++i) other.own_scratch_[i]->share(*own_scratch_[i]);
}

void Module::collect(std::vector<Parameter*>& ps, std::vector<Buffer*>& bs) {
  ps.insert(ps.end(), own_params_.begin(), own_params_.end());
  bs.insert(bs.end(), own_buffers_.begin(), own_buffers_.end());
  for (Module* c : children_) c->collect(ps, bs);
}

namespace {

template <typename T>
std::vector<T*> first_occurrences(const std::vector<T*>& all) {
  std::vector<T*> out;
  std::unordered_set<const T*> seen;
  for (T* p : all)
    if (seen.insert(p).second) out.push_back(p);
  return out;
}

// Names key the checkpoint's sections, the dump and the replicas' comparison: two states of
// one name write a checkpoint that cannot be read back (found only when resuming, after a
// preemption), so the model is refused as soon as anything lists its state.
void check_unique_names(const std::string& model, const std::vector<Parameter*>& ps,
                        const std::vector<Buffer*>& bs) {
  std::unordered_set<std::string> names;
  auto add = [&](const std::string& name, const char* kind) {
    DP_CHECK(names.insert(name).second,
             "model {}: two states are named '{}' (the second a {}): each parameter and buffer "
             "needs a name of its own, or checkpoints cannot be read back; give the modules "
             "that hold them different names",
             model, name, kind);
  };
  for (const Parameter* p : ps) add(p->name, "parameter");
  for (const Buffer* b : bs) add(b->name, "buffer");
}

}  // namespace

std::vector<Parameter*> Module::parameters() {
  std::vector<Parameter*> ps;
  std::vector<Buffer*> bs;
  collect(ps, bs);
  ps = first_occurrences(ps);
  check_unique_names(name_, ps, first_occurrences(bs));
  return ps;
}

std::vector<Buffer*> Module::buffers() {
  std::vector<Parameter*> ps;
  std::vector<Buffer*> bs;
  collect(ps, bs);
  bs = first_occurrences(bs);
  check_unique_names(name_, first_occurrences(ps), bs);
  return bs;
}

void Module::train(bool on) {
  training_ = on;
  for (Module* c : children_) c->train(on);
}

void Module::to(Device device) {
  for (Parameter* p : parameters()) {
    p->value = p->value.to(device);
    p->grad = p->grad.to(device);
  }
  for (Buffer* b : buffers()) b->value = b->value.to(device);
}

void Module::set_compute_dtype(DType dtype) {
  DP_CHECK(dtype == DType::f32 || dtype == DType::bf16,
           "{}: the compute dtype must be float32 or bfloat16, got {}", name_, dtype_name(dtype));
  compute_dtype_ = dtype;
  for (Module* c : children_) c->set_compute_dtype(dtype);
}

}  // namespace dp
