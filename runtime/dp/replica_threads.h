#pragma once
// torch.nn.parallel.parallel_apply for DataParallel on the CPU (and one thread per GPU): a
// fixed set of threads, one per replica, that run the same function on every replica at once
// and join. Replica 0 runs on the calling thread (DataParallel's main process is replica 0's),
// replicas 1..N-1 on threads started once, so a step costs two hand-offs, not N thread starts.
//
// A hand-off waits as the shared-memory all-reduce's barrier does between DDP ranks
// (runtime/comm/shm_allreduce.cpp): spin for 20 us (the other side is probably microseconds
// away), yield until 200 us, then sleep on a condition variable. Spinning longer (through
// replica 0's serial part of the step) made the mlp's step 0.76-0.91 ms instead of 1.1-1.7
// ms on the 2-core VM when other processes left it alone, and 8-11 ms instead of 0.9-1.1 ms
// when they did not (a spinning thread is what the scheduler preempts first): DataParallel
// gets DDP's waiting policy, not a better-tuned one.
//
// With at least as many CPUs as replicas (in the process's affinity mask), replica r's thread
// is bound to the r-th of them, replica 0's (the caller) for the pool's lifetime: mpirun binds
// DDP's ranks to cores the same way (--bind-to core, its default for up to 2 ranks), and
// unbound, the scheduler tends to wake a replica on the core of the thread that woke it, where
// the two then take turns.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dp {

class ReplicaThreads {
 public:
  // replicas >= 1; starts replicas - 1 threads.
  explicit ReplicaThreads(size_t replicas);
  ~ReplicaThreads();
  ReplicaThreads(const ReplicaThreads&) = delete;
  ReplicaThreads& operator=(const ReplicaThreads&) = delete;

  // Calls fn(r) for every replica r concurrently (fn(0) on this thread) and returns when every
  // call has returned. An exception thrown by any call is rethrown here after all have
  // finished (the lowest replica's, when several throw), so no replica is left running.
  // Not reentrant: one run() at a time, from one thread. Any callable taking the replica:
  // called through a pointer, not copied into a std::function (a heap block per step).
  template <typename F>
  void run(const F& fn) {
    run_erased(&fn, [](const void* f, size_t replica) { (*static_cast<const F*>(f))(replica); });
  }

  size_t size() const { return errors_.size(); }
  // Whether each replica's thread is bound to a core of its own, and which (-1: unbound).
  bool pinned() const { return pinned_; }
  int cpu(size_t replica) const { return pinned_ ? cpus_.at(replica) : -1; }
  // Calls f on this thread with the affinity it had before the pool bound it: threads that f
  // starts (a data loader's prefetch thread and workers) may then run on any of the CPUs
  // rather than share replica 0's.
  void with_caller_affinity(const std::function<void()>& f);

 private:
  void worker(size_t replica);
  void run_erased(const void* fn, void (*call)(const void* fn, size_t replica));

  std::vector<std::thread> threads_;
  // Per replica, of the current run(): written by that replica's thread before it counts
  // itself out of `running_`, read by run() after the count reached 0.
  std::vector<std::exception_ptr> errors_;
  std::mutex mu_;  // guards the sleeping side of both hand-offs
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  // run()'s callable and the function that calls it: set before generation_ moves.
  const void* fn_ = nullptr;
  void (*call_)(const void*, size_t) = nullptr;
  std::atomic<uint64_t> generation_{0};  // one per run(): each worker runs it once
  std::atomic<size_t> running_{0};       // workers still inside fn in this run()
  std::atomic<bool> stop_{false};
  bool pinned_ = false;
  std::vector<int> cpus_;                   // replica r's CPU when pinned
  std::vector<unsigned char> caller_mask_;  // the caller's affinity before, restored at the end
};

}  // namespace dp
