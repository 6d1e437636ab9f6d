#include "runtime/dp/replica_threads.h"

#include <pthread.h>
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

// How a hand-off waits: spin (the other side is probably microseconds away) until `spin`
// has passed, then yield until `patience` has, then go to sleep.
struct Patience {
  std::chrono::microseconds spin;
  std::chrono::microseconds yield;
};

// True once ready() holds; false when the caller should go to sleep.
template <typename Ready>
bool spin_until(Ready ready, Patience p) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (;;) {
    for (int k = 0; k < 32; ++k) {
      if (ready()) return true;
      cpu_relax();
    }
    const auto waited = clock::now() - start;
    if (waited >= p.yield) return false;
    if (waited >= p.spin) sched_yield();
  }
}

// The CPUs this process may run on, in order.
std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

// Binds the calling thread to one CPU; false (and unbound) when the system refuses.
bool bind_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

}  // namespace

ReplicaThreads::ReplicaThreads(size_t replicas) : errors_(replicas) {
  DP_CHECK(replicas >= 1, "replica threads: at least one replica, got {}", replicas);
  const std::vector<int> cpus = allowed_cpus();
  if (replicas > 1 && cpus.size() >= replicas) {
    cpus_.assign(cpus.begin(), cpus.begin() + std::ptrdiff_t(replicas));
    caller_mask_.resize(sizeof(cpu_set_t));
    auto* before = reinterpret_cast<cpu_set_t*>(caller_mask_.data());
    pinned_ =
        pthread_getaffinity_np(pthread_self(), sizeof(cpu_set_t), before) == 0 && bind_to(cpus_[0]);
    if (!pinned_) caller_mask_.clear();
  }
  // Bound to a core of its own, a waiting replica keeps it, spinning, for 5 ms: through
  // replica 0's serial part of the step (data, scatter, replicate, gather, update), as a DDP
  // rank keeps computing. Asleep it would come back a scheduler wake-up late, and a yield
  // hands the core to another process for a whole time slice (on the busy 2-core VM the mlp's
  // step took 1.1-1.7 ms with the barrier's 200 us of yielding, 0.8-2.6 ms with 5 ms of it,
  // 0.76-0.91 ms spinning; DDP 0.61-0.64). Unbound (more replicas than cores, or binding
  // refused): the DDP barrier's 20 us of spinning and 200 us of yielding, since the thread it
  // waits for may need this core.
  if (pinned_) patience_spin_ = patience_yield_ = std::chrono::microseconds(5000);
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
    if (!spin_until(started, Patience{patience_spin_, patience_yield_})) {
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
  if (!spin_until(done, Patience{patience_spin_, patience_yield_})) {
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, done);
  }
  for (const std::exception_ptr& e : errors_)
    if (e) std::rethrow_exception(e);
}

}  // namespace dp
