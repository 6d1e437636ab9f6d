#include "runtime/dp/replica_threads.h"

#include <pthread.h>
#include <sched.h>

#include <chrono>

#include "runtime/core/cpu_relax.h"
#include "runtime/core/error.h"
#include "runtime/launch/cpu_topology.h"

namespace dp {

namespace {

// True once ready() holds, after spinning for up to 20 us and yielding up to 200 us (the DDP
// barrier's policy); false when the caller should go to sleep.
template <typename Ready>
bool spin_until(Ready ready) {
  using clock = std::chrono::steady_clock;
  constexpr auto kSpin = std::chrono::microseconds(20);
  constexpr auto kYield = std::chrono::microseconds(200);
  const auto start = clock::now();
  for (;;) {
    for (int k = 0; k < 32; ++k) {
      if (ready()) return true;
      cpu_relax();
    }
    const auto waited = clock::now() - start;
    if (waited >= kYield) return false;
    if (waited >= kSpin) sched_yield();
  }
}

// Binds the calling thread to one CPU; false (and unbound) when the system refuses.
bool bind_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

}  // namespace

ReplicaThreads::ReplicaThreads(size_t replicas) {
  DP_CHECK(replicas >= 1, "replica threads: at least one replica, got {}", replicas);
  errors_.resize(replicas);
  const std::vector<int> cpus = affinity_cpus();
  if (replicas > 1 && cpus.size() >= replicas) {
    cpus_.assign(cpus.begin(), cpus.begin() + std::ptrdiff_t(replicas));
    caller_mask_.resize(sizeof(cpu_set_t));
    auto* before = reinterpret_cast<cpu_set_t*>(caller_mask_.data());
    pinned_ =
        pthread_getaffinity_np(pthread_self(), sizeof(cpu_set_t), before) == 0 && bind_to(cpus_[0]);
    if (!pinned_) caller_mask_.clear();
  }
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
  if (!caller_mask_.empty())
    pthread_setaffinity_np(pthread_self(), sizeof(cpu_set_t),
                           reinterpret_cast<const cpu_set_t*>(caller_mask_.data()));
}

void ReplicaThreads::with_caller_affinity(const std::function<void()>& f) {
  if (!pinned_) return f();
  const auto* before = reinterpret_cast<const cpu_set_t*>(caller_mask_.data());
  pthread_setaffinity_np(pthread_self(), sizeof(cpu_set_t), before);
  try {
    f();
  } catch (...) {
    bind_to(cpus_[0]);
    throw;
  }
  bind_to(cpus_[0]);
}

void ReplicaThreads::worker(size_t replica) {
  if (pinned_) bind_to(cpus_[replica]);  // best effort: unbound it still works
  uint64_t seen = 0;
  auto started = [&] {
    return stop_.load(std::memory_order_acquire) ||
           generation_.load(std::memory_order_acquire) != seen;
  };
  for (;;) {
    if (!spin_until(started)) {
      // The predicate is checked under the lock run() moves the generation under: no lost
      // wake-up.
      std::unique_lock<std::mutex> lk(mu_);
      start_cv_.wait(lk, started);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    std::exception_ptr err;
    try {
      call_(fn_, replica);
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

void ReplicaThreads::run_erased(const void* fn, void (*call)(const void*, size_t)) {
  for (size_t r = 1; r < errors_.size(); ++r) errors_[r] = nullptr;  // the workers are idle
  {
    std::lock_guard<std::mutex> lk(mu_);
    fn_ = fn;
    call_ = call;
    running_.store(threads_.size(), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  start_cv_.notify_all();
  errors_[0] = nullptr;
  try {
    call(fn, 0);
  } catch (...) {
    errors_[0] = std::current_exception();
  }
  auto done = [this] { return running_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(done)) {
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, done);
  }
  for (const std::exception_ptr& e : errors_)
    if (e) std::rethrow_exception(e);
}

}  // namespace dp
