#include "runtime/comm/staging_pool.h"

namespace dp {

StagingPool::StagingPool(Alloc alloc) : alloc_(std::move(alloc)) {}

std::shared_ptr<Tensor> StagingPool::acquire(const Shape& shape, DType dtype) {
  const auto key = std::make_pair(dtype, shape_numel(shape));
  Tensor t;
  {
    std::lock_guard<std::mutex> lk(state_->mu);
    auto it = state_->free.find(key);
    if (it != state_->free.end() && !it->second.empty()) {
      t = std::move(it->second.back());
      it->second.pop_back();
    }
  }
  if (!t.defined()) {
    t = alloc_({static_cast<int64_t>(key.second)}, dtype);
    std::lock_guard<std::mutex> lk(state_->mu);
    ++state_->allocations;
  }
  std::shared_ptr<State> state = state_;
  Tensor flat = t;  // what goes back: the 1-D buffer, whatever shape this lease sees
  return std::shared_ptr<Tensor>(new Tensor(t.reshape(shape)), [state, flat, key](Tensor* p) {
    delete p;
    std::lock_guard<std::mutex> lk(state->mu);
    state->free[key].push_back(flat);
  });
}

size_t StagingPool::allocations() const {
  std::lock_guard<std::mutex> lk(state_->mu);
  return state_->allocations;
}

size_t StagingPool::idle() const {
  std::lock_guard<std::mutex> lk(state_->mu);
  size_t n = 0;
  for (const auto& [key, list] : state_->free) n += list.size();
  return n;
}

}  // namespace dp
