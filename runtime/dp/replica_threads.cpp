#include "runtime/dp/replica_threads.h"

#include <sched.h>

#include <chrono>

#include "runtime/core/error.h"

namespace dp {

namespace {

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// True once ready() holds, spinning for up to 20 us, then yielding until `patience` has
// passed; false when the caller should go to sleep.
template <typename Ready>
bool spin_until(Ready ready, std::chrono::microseconds patience) {
  using clock = std::chrono::steady_clock;
  constexpr auto kSpin = std::chrono::microseconds(20);
  const auto start = clock::now();
  for (;;) {
    for (int k = 0; k < 32; ++k) {
      if (ready()) return true;
      cpu_relax();
    }
    const auto waited = clock::now() - start;
    if (waited >= patience) return false;
    if (waited >= kSpin) sched_yield();
  }
}

}  // namespace

ReplicaThreads::ReplicaThreads(size_t replicas) : errors_(replicas) {
  DP_CHECK(replicas >= 1, "replica threads: at least one replica, got {}", replicas);
  // A core per replica: a waiting replica keeps its core through replica 0's serial part of
  // the step (data, scatter, replicate, gather, update: milliseconds for a large model), as a
  // DDP rank keeps computing; otherwise the waiting thread would sleep at every step and
  // come back a scheduler wake-up late. More replicas than cores: the DDP barrier's 200 us,
  // after which the cores go to the replicas that compute.
  const unsigned cores = std::thread::hardware_concurrency();
  patience_ = cores == 0 || replicas <= cores ? std::chrono::microseconds(5000)
                                              : std::chrono::microseconds(200);
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
  auto started = [&] {
    return stop_.load(std::memory_order_acquire) ||
           generation_.load(std::memory_order_acquire) != seen;
  };
  for (;;) {
    if (!spin_until(started, patience_)) {
      // The predicate is checked under the lock run() moves the generation under: no lost
      // wake-up.
      std::unique_lock<std::mutex> lk(mu_);
      start_cv_.wait(lk, started);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    std::exception_ptr err;
    try {
      (*fn_)(replica);
    } catch (...) {
      err = std::current_exception();
    }
    errors_[replica] = std::move(err);
    if (running_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      // The last one out wakes run() if it went to sleep (taking the lock orders this after
      // run()'s check of the count).
      std::lock_guard<std::mutex> lk(mu_);
      done_cv_.notify_one();
    }
  }
}

void ReplicaThreads::run(const std::function<void(size_t)>& fn) {
  for (size_t r = 1; r < errors_.size(); ++r) errors_[r] = nullptr;  // the workers are idle
  {
    std::lock_guard<std::mutex> lk(mu_);
    fn_ = &fn;
    running_.store(threads_.size(), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  start_cv_.notify_all();
  errors_[0] = nullptr;
  try {
    fn(0);
  } catch (...) {
    errors_[0] = std::current_exception();
  }
  auto done = [this] { return running_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(done, patience_)) {
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, done);
  }
  for (const std::exception_ptr& e : errors_)
    if (e) std::rethrow_exception(e);
}

}  // namespace dp
