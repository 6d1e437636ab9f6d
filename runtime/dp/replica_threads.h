#pragma once
// torch.nn.parallel.parallel_apply for DataParallel on the CPU (and one thread per GPU): a
// fixed set of threads, one per replica, that run the same function on every replica at once
// and join. Replica 0 runs on the calling thread (DataParallel's main process is replica 0's),
// replicas 1..N-1 on threads started once, so a step costs two hand-offs, not N thread starts.
//
// A hand-off waits as the shared-memory all-reduce's barrier does between DDP ranks
// (runtime/comm/shm_allreduce.cpp): spin while the other side is probably microseconds away,
// then yield, then sleep on a condition variable. A thread that went to sleep pays the
// scheduler's wake-up, which on a busy machine is a time slice: with a core per replica the
// yielding lasts 5 ms (longer than replica 0's serial part of a step), else 200 us.
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
  // Not reentrant: one run() at a time, from one thread.
  void run(const std::function<void(size_t replica)>& fn);

  size_t size() const { return errors_.size(); }

 private:
  void worker(size_t replica);

  std::vector<std::thread> threads_;
  // Per replica, of the current run(): written by that replica's thread before it counts
  // itself out of `running_`, read by run() after the count reached 0.
  std::vector<std::exception_ptr> errors_;
  std::mutex mu_;  // guards the sleeping side of both hand-offs
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  const std::function<void(size_t)>* fn_ = nullptr;  // set before generation_ moves
  std::atomic<uint64_t> generation_{0};              // one per run(): each worker runs it once
  std::atomic<size_t> running_{0};                   // workers still inside fn in this run()
  std::atomic<bool> stop_{false};
  std::chrono::microseconds patience_{200};  // how long a hand-off spins and yields
};

}  // namespace dp
