#pragma once
// The CPU backend: collectives over MPI. One communication thread owns every collective
// call, fed by a FIFO queue; the public calls only check their arguments, queue a task and
// return its Work. Why a thread: MPI's non-blocking collectives make no progress while the
// main thread computes (nobody enters the library to drive them), so a thread that sits in
// the blocking call is what makes communication overlap backward for real.
//
// Lifetime: create it after MPI_Init (dp::MpiRuntime) and destroy it BEFORE MPI_Finalize,
// i.e. declare it after the MpiRuntime in the same scope. The destructor finishes the
// queued work and frees the communicator, both of which need MPI alive.
//
// Threading: with MPI_THREAD_MULTIPLE (what dp::MpiRuntime asks for) other threads may keep
// using MPI meanwhile. At MPI_THREAD_SERIALIZED they must not call MPI while work is queued.
#include <climits>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <mpi.h>
#include "runtime/comm/process_group.h"

namespace dp {

struct MpiProcessGroupOptions {
  // MPI counts are int: a tensor above this many elements goes in several calls. Tests
  // lower it to run the chunked path on small tensors.
  size_t max_count_per_call = INT_MAX;
  // float32 sum/avg all-reduces of at least this many bytes use dprun's ring all-reduce
  // (runtime/comm/ring_allreduce.h); smaller ones, where latency rules, MPI_Allreduce.
  size_t ring_min_bytes = 64 * 1024;
};

class MpiProcessGroup : public ProcessGroup {
 public:
  // Works on a duplicate of `comm` (its own matching context, errors returned rather than
  // fatal), so its traffic never mixes with the caller's. Collective over `comm`.
  explicit MpiProcessGroup(MPI_Comm comm = MPI_COMM_WORLD);
  MpiProcessGroup(MPI_Comm comm, MpiProcessGroupOptions options);
  ~MpiProcessGroup() override;
  MpiProcessGroup(const MpiProcessGroup&) = delete;
  MpiProcessGroup& operator=(const MpiProcessGroup&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  WorkPtr allreduce(Tensor& t, ReduceOp op, const std::string& tag = "allreduce") override;
  WorkPtr broadcast(Tensor& t, int root, const std::string& tag = "broadcast") override;
  WorkPtr allgather(const Tensor& in, Tensor& out, const std::string& tag = "allgather") override;
  WorkPtr barrier(const std::string& tag = "barrier") override;

 private:
  struct Task {
    WorkPtr work;
    std::function<void(const Work&)> run;  // holds Tensor handles: buffers live until done
  };

  WorkPtr enqueue(std::string description, std::function<void(const Work&)> run);
  void comm_loop();
  void run_allreduce(Tensor t, ReduceOp op, const Work& w);
  void run_broadcast(Tensor t, int root, const Work& w) const;
  void run_allgather(const Tensor& in, Tensor out, const Work& w) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  MpiProcessGroupOptions options_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  uint64_t next_seq_ = 1;
  bool stop_ = false;
  std::vector<float> ring_scratch_;  // used by the communication thread only
  std::thread thread_;
};

}  // namespace dp
