#pragma once
// NcclProcessGroup: the ProcessGroup of the GPU path, over one NcclComm (DESIGN.md, "The
// process model"). Collectives on CUDA tensors are asynchronous: the call records an event
// on the device's compute stream (where backward wrote the gradients), hands it to NCCL as
// the ready event (the comm stream waits on it GPU-side, the host does not block) and
// returns a dp::Work at once. A watchdog thread owns every in-flight collective: it marks a
// Work completed when NCCL's end event is observed done (host timestamps, plus the device's
// own elapsed time), and when a collective passes its deadline or NCCL reports an
// asynchronous error it aborts the communicator and fails EVERY pending Work with a
// dp::Error naming the collective: a dead peer never hangs the job.
//
// CPU tensors (small control collectives: gather_strings, the settings check, eval totals)
// are staged through device memory synchronously: the Work is complete on return.
//
// Desync check (DESIGN.md, "Desync and hangs"): before a collective is enqueued, the ranks
// compare its fingerprint on the host (runtime/comm/mpi_fingerprint.h: one small MPI
// all-reduce over a duplicate of the bootstrap communicator, polled against the timeout). A
// mismatch fails that Work on every rank with a dp::CollectiveError naming both sides, and
// every later one, before NCCL sees mismatched calls (which would hang or mix buckets). The
// price: one host round trip per collective, and an issuing thread that waits for the
// slowest rank to reach the same collective. Wait() without a deadline of its own allows
// the watchdog's timeout plus a grace, so that the watchdog's error is the one reported.
//
// Result visibility: after Work::wait() the result is complete on the device, so anything
// issued to the compute stream afterwards (the optimizer) reads it. The tensors of a
// collective are held until it completes, so the caching allocator cannot reuse them early.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "runtime/comm/cuda/nccl_comm.h"
#include "runtime/comm/nccl_backend.h"
#include "runtime/comm/process_group.h"

namespace dp {

class NcclProcessGroup : public ProcessGroup {
 public:
  // Bootstraps the communicator over `comm` (collective over it).
  NcclProcessGroup(MPI_Comm comm, const NcclProcessGroupOptions& options);
  // Over a communicator made elsewhere (tests: a world of one without MPI).
  NcclProcessGroup(std::unique_ptr<NcclComm> comm, const NcclProcessGroupOptions& options);
  // Waits (bounded by the watchdog's deadlines) for the in-flight collectives, then frees
  // the communicator.
  ~NcclProcessGroup() override;
  NcclProcessGroup(const NcclProcessGroup&) = delete;
  NcclProcessGroup& operator=(const NcclProcessGroup&) = delete;

  int rank() const override { return comm_->rank(); }
  int size() const override { return comm_->size(); }
  std::string backend() const override { return "nccl"; }
  int device() const { return comm_->device(); }
  NcclComm& comm() { return *comm_; }

  WorkPtr allreduce(Tensor& t, ReduceOp op, const std::string& tag = "allreduce") override;
  WorkPtr broadcast(Tensor& t, int root, const std::string& tag = "broadcast") override;
  WorkPtr allgather(const Tensor& in, Tensor& out, const std::string& tag = "allgather") override;
  WorkPtr barrier(const std::string& tag = "barrier",
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) override;
  // Device memory on this group's GPU for a CUDA `device` (which must be this group's);
  // plain host memory for the CPU (staged per collective). Not collective.
  Tensor allocate(size_t numel, DType dtype = DType::f32, Device device = Device::cpu()) override;

  // ncclCommAbort, and every pending Work fails with `reason`.
  void abort(const std::string& reason) override;

 private:
  struct Pending {
    WorkPtr work;
    NcclWorkPtr nccl;
    std::chrono::steady_clock::time_point deadline;
    Tensor keep_a, keep_b;  // the collective's buffers, alive until it completed
  };

  // Issues `issue(ready_event)` for CUDA tensors and queues the result for the watchdog.
  // Checks the collective's fingerprint (`hash`: collective_hash()) across the ranks, then
  // issues `issue(ready_event)` and queues the result for the watchdog. A positive `timeout`
  // replaces the group's for this collective (a barrier's own): its desync check, its watchdog
  // deadline and its Work's wait().
  template <typename Issue>
  WorkPtr launch(const std::string& description, uint64_t hash, Tensor a, Tensor b, Issue&& issue,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  void check_device(const Tensor& t, const std::string& op, const std::string& tag) const;
  void watchdog_loop();

  NcclProcessGroupOptions options_;
  std::unique_ptr<NcclComm> comm_;
  std::mutex issue_mu_;  // serialises launches: check and issue, in seq order
  std::mutex mu_;        // guards pending_, next_seq_ and stop_
  std::condition_variable cv_;
  std::deque<Pending> pending_;
  uint64_t next_seq_ = 1;
  bool stop_ = false;
  // The host-side desync check's communicator (a duplicate of the bootstrap's); null for a
  // group over a communicator made without MPI (tests: a world of one), which checks nothing.
  MPI_Comm check_comm_ = MPI_COMM_NULL;
  // Set when the ranks disagreed on a collective (under issue_mu_): every later one fails.
  std::string desync_;
  std::thread watchdog_;
};

}  // namespace dp
