#include "runtime/dp/replica_threads.h"

#include "runtime/core/error.h"

namespace dp {

ReplicaThreads::ReplicaThreads(size_t replicas) : errors_(replicas) {
  DP_CHECK(replicas >= 1, "replica threads: at least one replica, got {}", replicas);
  threads_.reserve(replicas - 1);
  for (size_t r = 1; r < replicas; ++r) threads_.emplace_back([this, r] { worker(r); });
}

ReplicaThreads::~ReplicaThreads() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void ReplicaThreads::worker(size_t replica) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(size_t)>* fn = nullptr;
    {
      std::unique_lock<std::mutex> lk(mu_);
      start_cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      fn = fn_;
    }
    std::exception_ptr err;
    try {
      (*fn)(replica);
    } catch (...) {
      err = std::current_exception();
    }
    bool last = false;
    {
      std::lock_guard<std::mutex> lk(mu_);
      errors_[replica] = std::move(err);
      last = --running_ == 0;
    }
    if (last) done_cv_.notify_one();
  }
}

void ReplicaThreads::run(const std::function<void(size_t)>& fn) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (std::exception_ptr& e : errors_) e = nullptr;
    fn_ = &fn;
    running_ = threads_.size();
    ++generation_;
  }
  start_cv_.notify_all();
  try {
    fn(0);
  } catch (...) {
    errors_[0] = std::current_exception();  // only this thread writes replica 0's slot
  }
  {
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return running_ == 0; });
    fn_ = nullptr;
  }
  for (const std::exception_ptr& e : errors_)
    if (e) std::rethrow_exception(e);
}

}  // namespace dp
