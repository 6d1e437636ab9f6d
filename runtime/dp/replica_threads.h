#pragma once
// torch.nn.parallel.parallel_apply for DataParallel on the CPU (and one thread per GPU): a
// fixed set of threads, one per replica, that run the same function on every replica at once
// and join. Replica 0 runs on the calling thread (DataParallel's main process is replica 0's),
// replicas 1..N-1 on threads started once, so a step costs two wake-ups, not N thread starts.
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
  std::vector<std::exception_ptr> errors_;  // per replica, of the current run()
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  const std::function<void(size_t)>* fn_ = nullptr;
  uint64_t generation_ = 0;  // one per run(): a worker runs each generation once
  size_t running_ = 0;       // workers still inside fn in this generation
  bool stop_ = false;
};

}  // namespace dp
