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
// Shared memory: when every rank of the communicator is on one node (and more than one),
// allocate() places buffers in MPI-3 shared windows and all-reduces (sum, avg) of float32,
// bfloat16 and float16 tensors inside them run without MPI: each rank reduces its slice of
// every rank's buffer in place (runtime/comm/shm_allreduce.h; 16-bit floats are summed in
// float32 and rounded once). allocate() runs as a task on the communication thread, so the window's
// collective creation never overlaps another of the group's MPI calls; the windows are freed
// when the group is destroyed, so buffers from allocate() must not be used after it.
//
// Several nodes (MpiProcessGroupOptions::allreduce_algo): when the ranks span more than one
// node with the same number L > 1 on each, the shared windows are made per node instead, and
// all-reduces of buffers in them go hierarchical (runtime/comm/hierarchical_allreduce.h):
// through shared memory inside each node and across nodes among the ranks of one local index.
// The desync check stays the MPI one below (every rank against every other, tiny all-reduces
// riding in it). Other layouts
// (uneven nodes, one rank per node, --no-shm) keep the flat path below, and rank 0 says why
// when the hierarchical algorithm was asked for by name.
//
// bfloat16 and float16 elsewhere: broadcast and allgather move the bytes; sum/avg all-reduces
// outside the shared windows use MPI_Allreduce with a user-defined op per type that adds in
// float32 and rounds each combine (like NCCL), avg scaling after. min/max of them are
// rejected.
//
// CUDA tensors (host staging): MPI moves host memory, so a collective on a CUDA tensor copies
// it to the host on the calling thread (on the device's compute stream, after the kernels
// that wrote it; the copy waits for them), runs the MPI collective on the host copy on the
// communication thread, and copies the result back to the device there before the Work
// completes. Slower than NCCL, but it lets several ranks share one GPU (NCCL refuses that),
// which is how multi-rank GPU runs are tested on a one-GPU machine.
//
// Desync check (DESIGN.md, "Desync and hangs"): before any collective's data moves, the
// ranks compare its fingerprint (seq, kind, op or root, dtype, count, tag;
// runtime/comm/fingerprint.h): inside the shared-memory barrier that every collective of a
// node-local group passes, or otherwise in dprun's recursive doubling of small messages,
// which also carries all-reduces of up to fused_max_bytes (runtime/comm/fused_check.h): no
// second round. A mismatch is a
// dp::CollectiveError on every rank naming both sides, and the group then refuses every later
// collective (alike on every rank, without communicating).
//
// Threading: with MPI_THREAD_MULTIPLE (what dp::MpiRuntime asks for) other threads may keep
// using MPI meanwhile. At MPI_THREAD_SERIALIZED they must not call MPI while work is queued.
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <mpi.h>
#include "runtime/comm/fingerprint.h"
#include "runtime/comm/fused_check.h"
#include "runtime/comm/hierarchical_allreduce.h"
#include "runtime/comm/process_group.h"
#include "runtime/comm/shm_allreduce.h"
#include "runtime/comm/staging_pool.h"

namespace dp {

struct MpiProcessGroupOptions {
  // MPI counts are int: a tensor above this many elements goes in several calls. Tests
  // lower it to run the chunked path on small tensors.
  size_t max_count_per_call = INT_MAX;
  // float32 sum/avg all-reduces of at least this many bytes use dprun's ring all-reduce
  // (runtime/comm/ring_allreduce.h); smaller ones, where latency rules, MPI_Allreduce.
  size_t ring_min_bytes = 64 * 1024;
  // Use shared-memory buffers and all-reduces when all ranks share one node. Must be the
  // same on every rank: ranks that differ fail at construction, on every rank, naming
  // --no-shm (runtime/comm/setting_agreement.h), as they do for allreduce_algo and node_split.
  bool shared_memory = true;
  // A shared-memory barrier whose peers have not all arrived after this long fails (its
  // Work's wait() throws a dp::CollectiveTimeout naming the collective and the missing
  // ranks), so that a dead rank never hangs the job silently, and poisons the group: every
  // later collective fails on every rank (runtime/comm/shm_allreduce.h says why).
  std::chrono::milliseconds shm_timeout{std::chrono::seconds(300)};
  // The group's timeout (ProcessGroup::timeout()): what wait() allows a Work when the caller
  // names no deadline, and allocate()'s wait. dprun passes --timeout to both.
  std::chrono::milliseconds timeout{ProcessGroup::kDefaultTimeout};
  // Across several nodes: hierarchical (shared memory in each node, then across nodes) or
  // flat (every rank in one ring / MPI_Allreduce). auto: hierarchical where the layout allows
  // it (runtime/comm/hierarchical_allreduce.h). Must be the same on every rank (checked at
  // construction, like shared_memory and the effective node_split).
  AllreduceAlgo allreduce_algo = AllreduceAlgo::automatic;
  // How errors and warnings name allreduce_algo: the option of the program that set it
  // (bench-allreduce's is --algo).
  const char* algo_option = "--allreduce-algo";
  // A test hook: > 0 makes "nodes" of this many consecutive ranks instead of asking MPI which
  // ranks share memory, so that one host tests the multi-node paths (the windows are still
  // real shared memory, so the ranks must share one host). 0: the environment variable
  // DPRUN_NODE_SPLIT, when set, else real nodes.
  int node_split = 0;
  // Across nodes, all-reduces of shared buffers above fused_max_bytes (the small ones ride in
  // the desync check) up to this many bytes take the flat path (MPI_Allreduce after the
  // check) rather than the hierarchical one, whose two shared barriers and cross-node
  // exchange after the check cost more than they save there (measured on 2 emulated hosts x
  // 2 ranks: bench-allreduce, README "Multi-host on one machine").
  size_t hierarchical_min_bytes = 64 * 1024;
  // All-reduces of up to this many bytes (across nodes with the hierarchical layout: of
  // float32 values, 16-bit ones widened) ride in the desync check's own messages
  // (runtime/comm/fused_check.h) when no one-node shared group carries them: one round of
  // messages instead of the check's and then MPI_Allreduce's. Must be the same on every rank
  // (ranks that differ fail the check by name rather than hang). 0: only the check.
  size_t fused_max_bytes = FusedCheck::kDefaultBytes;
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
  std::string algorithm() const override;

  WorkPtr allreduce(Tensor& t, ReduceOp op, const std::string& tag = "allreduce") override;
  WorkPtr broadcast(Tensor& t, int root, const std::string& tag = "broadcast") override;
  WorkPtr allgather(const Tensor& in, Tensor& out, const std::string& tag = "allgather") override;
  WorkPtr barrier(const std::string& tag = "barrier",
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) override;
  // In a shared window when uses_shared_memory(), else Tensor::zeros. Collective; blocks
  // until the buffer exists (after every collective queued before it). A CUDA `device`
  // gives device memory (staged through the host by every collective, see below).
  Tensor allocate(size_t numel, DType dtype = DType::f32, Device device = Device::cpu()) override;

  // Whether allocate() gives shared-memory buffers (the same answer on every rank).
  bool uses_shared_memory() const { return shm() != nullptr; }
  // Whether shared-memory all-reduces go hierarchical (the ranks span several nodes).
  bool hierarchical() const { return hier_ != nullptr; }
  // Page-locked buffers made so far for staging CUDA tensors (reused: stable in a steady state).
  size_t staging_buffers() const { return staging_.allocations(); }

 private:
  // Runs on the communication thread with the collective's Work and fingerprint.
  using Run = std::function<void(const Work&, const Fingerprint&)>;
  struct Task {
    WorkPtr work;
    uint64_t hash = 0;  // collective_hash(): what the ranks compare before the data moves
    Run run;            // holds Tensor handles: buffers live until done
  };

  // A positive `timeout` replaces the group's for this collective's Work (a barrier's own).
  WorkPtr enqueue(std::string description, uint64_t hash, Run run,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  void comm_loop();
  // The desync check every collective passes before its data moves: through the shared
  // control block when there is one (runtime/comm/shm_allreduce.h), else dprun's recursive
  // doubling of small point-to-point messages (runtime/comm/fused_check.h). `timeout` bounds
  // the shared-memory wait (0: shm_timeout); the MPI check is bounded by its Work's wait().
  void check(const Fingerprint& fp,
             std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // Host staging of CUDA tensors through pinned buffers from staging_.
  std::shared_ptr<Tensor> stage_out(const Tensor& t);
  static void stage_back(const Tensor& host, Tensor& t);
  void run_allreduce(Tensor t, ReduceOp op, const Work& w, const Fingerprint& fp);
  MPI_Op half_sum_op(DType dtype) const;  // bf16_sum_ or f16_sum_
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
  // Set (on the communication thread) when the ranks disagreed on a collective: they no
  // longer issue the same sequence, so every later collective fails without communicating,
  // alike on every rank, and the group's destruction never waits on a mismatched call.
  std::string desync_;
  MPI_Op bf16_sum_ = MPI_OP_NULL;    // bfloat16 addition in float32, rounded per combine
  MPI_Op f16_sum_ = MPI_OP_NULL;     // the same for float16
  std::vector<float> ring_scratch_;  // used by the communication thread only
  StagingPool staging_{[](const Shape& s, DType d) { return Tensor::pinned_zeros(s, d); }};
  // The shared-memory group: one node's, from hier_ when the ranks span several nodes.
  ShmAllreduce* shm() const { return hier_ ? &hier_->shm() : shm_.get(); }
  std::unique_ptr<ShmAllreduce> shm_;            // after construction, used by the comm thread only
  std::unique_ptr<HierarchicalAllreduce> hier_;  // the same
  std::unique_ptr<FusedCheck> fused_;            // the desync check without shared memory
  std::thread thread_;
};

}  // namespace dp
