#include "runtime/data/row_pool.h"

#include "runtime/core/error.h"

namespace dp {

RowPool::RowPool(size_t threads) {
  DP_CHECK(threads >= 1, "data loader: at least one worker thread is needed (got {})", threads);
  errors_.resize(threads);
  helpers_.reserve(threads - 1);
  for (size_t p = 1; p < threads; ++p) helpers_.emplace_back([this, p] { helper(p); });
}

RowPool::~RowPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (std::thread& t : helpers_) t.join();
}

void RowPool::range(size_t part, size_t& begin, size_t& end) const {
  const size_t parts = threads();
  begin = rows_ * part / parts;
  end = rows_ * (part + 1) / parts;
}

void RowPool::helper(size_t part) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      start_cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    size_t begin = 0, end = 0;
    range(part, begin, end);
    try {
      if (begin < end) thunk_(fn_, begin, end);
    } catch (...) {
      errors_[part] = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

void RowPool::run_erased(size_t rows, Thunk thunk, void* fn) {
  for (auto& e : errors_) e = nullptr;
  if (helpers_.empty()) {
    if (rows > 0) thunk(fn, 0, rows);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    rows_ = rows;
    thunk_ = thunk;
    fn_ = fn;
    pending_ = helpers_.size();
    ++generation_;
  }
  start_cv_.notify_all();
  size_t begin = 0, end = 0;
  range(0, begin, end);
  try {
    if (begin < end) thunk(fn, begin, end);
  } catch (...) {
    errors_[0] = std::current_exception();
  }
  {
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
  }
  for (auto& e : errors_)
    if (e) std::rethrow_exception(e);
}

}  // namespace dp
