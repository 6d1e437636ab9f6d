#include "runtime/dp/replicate.h"

#include "runtime/core/error.h"

namespace dp {

namespace {

template <typename T>
void check_same(const std::vector<T*>& a, const std::vector<T*>& b, const char* what,
                size_t replica) {
  DP_CHECK(a.size() == b.size(), "replica {} has {} {}s, replica 0 has {}", replica, b.size(), what,
           a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const Tensor& x = a[i]->value;
    const Tensor& y = b[i]->value;
    DP_CHECK(a[i]->name == b[i]->name && x.shape() == y.shape() && x.dtype() == y.dtype(),
             "replica {}'s {} #{} is {} {}, replica 0's is {} {}", replica, what, i, b[i]->name,
             y.str(), a[i]->name, x.str());
  }
}

}  // namespace

void check_same_replica(const ReplicaState& first, const ReplicaState& other, size_t replica) {
  check_same(first.params, other.params, "parameter", replica);
  check_same(first.buffers, other.buffers, "buffer", replica);
}

void replicate(const ReplicaState& from, const ReplicaState& to) {
  for (size_t i = 0; i < from.params.size(); ++i) to.params[i]->value.copy_(from.params[i]->value);
  for (size_t i = 0; i < from.buffers.size(); ++i)
    to.buffers[i]->value.copy_(from.buffers[i]->value);
}

size_t replicate_bytes(const ReplicaState& state) {
  size_t n = 0;
  for (const Parameter* p : state.params) n += p->value.nbytes();
  for (const Buffer* b : state.buffers) n += b->value.nbytes();
  return n;
}

}  // namespace dp
