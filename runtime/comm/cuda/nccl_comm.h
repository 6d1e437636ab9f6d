#pragma once
// NcclComm: one NCCL communicator, its dedicated comm stream and the watchdog semantics the
// GPU path needs (DESIGN.md, "Errors" and "Desync and hangs").
//
// Bootstrap (the MPI constructor): rank 0 creates the unique id, MPI broadcasts it, every
// rank calls ncclCommInitRankConfig with a NON-BLOCKING config and polls
// ncclCommGetAsyncError until set-up is over, aborting it at a deadline. Non-blocking is
// what makes the deadline possible: a blocking init whose peer never arrives never returns.
// Device rule: an explicit device (options.device, dprun's launcher passes the one it planned)
// is used as given; otherwise local rank r drives cuda:r, and only when the node has at least
// as many visible GPUs as ranks (NCCL refuses two ranks on one GPU).
//
// Collectives take raw device pointers and run on the communicator's own stream. `ready` is
// an event the caller recorded on its compute stream after writing the input; the comm
// stream waits on it (GPU-side, the host does not block), so the collective reads finished
// data while the compute stream moves on. nullptr means "no dependency": the input was
// produced by work the host already waited for.
//
// Memory: the buffers are used on the comm stream until the returned work completes. If
// they come from dp::CachingAllocator on another stream, call
// allocator.record_stream(ptr, comm.stream()) before freeing them (allocator.h).
//
// Watchdog: NcclWork::wait(timeout) polls the end event and ncclCommGetAsyncError. On an
// asynchronous NCCL error, a CUDA error, or when the deadline passes, it aborts the
// communicator (ncclCommAbort: the kernels of this rank quit) and throws a dp::Error naming
// the rank, the collective's sequence number and description and the elapsed time. After an
// abort every call on the communicator throws; ncclCommDestroy is never called on an
// aborted communicator (NCCL forbids touching it again, and a destroy could hang).
//
// Thread safety: all calls on one NcclComm and its works are serialised by one mutex, so
// wait() may run on another thread than the one issuing collectives.
#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/comm/process_group.h"
#include "runtime/core/cuda/stream.h"

namespace dp {

enum class NcclDType : uint8_t { f32, bf16, i32, f16 };
size_t nccl_dtype_size(NcclDType t);
const char* nccl_dtype_name(NcclDType t);  // "float32", "bfloat16", "int32", "float16"

struct NcclCommOptions {
  // -1: cuda:<local rank> (see select_nccl_device); else this device of the node.
  int device = -1;
  // Communicator set-up, including the first connection between ranks.
  std::chrono::milliseconds init_timeout{std::chrono::minutes(5)};
  // The default deadline of NcclWork::wait(), of handing a collective to NCCL, and of
  // finalize(). The Reducer passes its --timeout to wait() explicitly.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // The comm stream gets the device's highest priority (see CudaStream).
  bool high_priority_stream = true;
};

// The device a rank drives with NCCL, or a dp::Error that says why there is none.
// `requested` < 0 means cuda:<local_rank>, which needs local_size <= visible_gpus; a requested
// device need only be visible (per-task GPU binding shows each rank one GPU as cuda:0). Pure,
// so that it is testable without a GPU.
int select_nccl_device(int rank, const std::string& host, int local_rank, int local_size,
                       int visible_gpus, int requested);

namespace detail {
struct NcclState;
}

// The handle of one collective (the GPU counterpart of dp::Work).
class NcclWork {
 public:
  // Blocks the host until the collective completed. timeout <= 0 uses the communicator's
  // options.timeout: unlike the CPU Work, a GPU collective is never waited for without a
  // deadline. Throws dp::Error (after aborting the communicator) on a timeout, an
  // asynchronous NCCL error or a CUDA error; calling it again after that throws again.
  void wait(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // true when the collective finished, or can no longer finish because the communicator
  // was aborted or the device failed (wait() then reports why). Never blocks.
  bool done() const;
  // GPU time of the collective itself, from the comm stream reaching it (after `ready`) to
  // its end. Only after it is done.
  float elapsed_ms() const;
  // Later work on `stream` (e.g. the optimizer on the compute stream) waits for this
  // collective, without blocking the host. It orders work only: errors still surface
  // through wait().
  void block_stream(cudaStream_t stream) const;
  cudaEvent_t end_event() const { return end_.get(); }

  uint64_t seq() const { return seq_; }
  const std::string& description() const { return description_; }
  double enqueue_us() const { return enqueue_us_; }  // dp::now_us() when it was issued
  double complete_us() const;                        // when wait() saw it complete; 0 before

  NcclWork(const NcclWork&) = delete;
  NcclWork& operator=(const NcclWork&) = delete;

 private:
  friend class NcclComm;
  NcclWork(std::shared_ptr<detail::NcclState> state, uint64_t seq, std::string description);

  std::shared_ptr<detail::NcclState> state_;
  uint64_t seq_;
  std::string description_;
  double enqueue_us_;
  CudaEvent start_;
  CudaEvent end_;
  bool completed_ = false;  // guarded by the state's mutex
  double complete_us_ = 0;
};

using NcclWorkPtr = std::shared_ptr<NcclWork>;

class NcclComm {
 public:
  // Collective over `comm`: every rank of it must construct an NcclComm at the same point.
  // MPI must be initialised. A rank that cannot pick a GPU makes EVERY rank throw
  // (dp::CollectiveError) before NCCL is touched, so none is left waiting.
  explicit NcclComm(MPI_Comm comm, NcclCommOptions options = {});
  // Without MPI: every rank passes the same id (from unique_id(), distributed by any
  // means), its rank, the world size and its device. A world of one needs nothing else.
  NcclComm(const ncclUniqueId& id, int rank, int size, int device, NcclCommOptions options = {});
  // Graceful when healthy (finalize, bounded by options.timeout, then destroy), nothing to
  // do when aborted. Never throws; a failure is logged.
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  static ncclUniqueId unique_id();

  int rank() const;
  int size() const;
  int device() const;
  cudaStream_t stream() const { return stream_.get(); }
  bool aborted() const;
  uint64_t issued() const;  // collectives issued so far: the last sequence number

  // In place: every rank ends with op over all ranks' `buf` (count elements).
  NcclWorkPtr allreduce(void* buf, size_t count, NcclDType dtype, ReduceOp op, cudaEvent_t ready,
                        const std::string& tag = "allreduce");
  // Out of place: `recv` gets op over all ranks' `send`; `send` is unchanged.
  NcclWorkPtr allreduce(const void* send, void* recv, size_t count, NcclDType dtype, ReduceOp op,
                        cudaEvent_t ready, const std::string& tag = "allreduce");
  // In place: every rank ends with root's `buf`.
  NcclWorkPtr broadcast(void* buf, size_t count, NcclDType dtype, int root, cudaEvent_t ready,
                        const std::string& tag = "broadcast");
  // Out of place: `recv` gets root's `send` (only root's `send` is read).
  NcclWorkPtr broadcast(const void* send, void* recv, size_t count, NcclDType dtype, int root,
                        cudaEvent_t ready, const std::string& tag = "broadcast");
  // `recv` holds size() * send_count elements; rank r's `send` lands at r * send_count.
  NcclWorkPtr allgather(const void* send, void* recv, size_t send_count, NcclDType dtype,
                        cudaEvent_t ready, const std::string& tag = "allgather");

  // ncclCommAbort now: this rank's pending NCCL kernels quit; later calls throw, naming
  // `reason`. What dprun's error path calls before MPI_Abort.
  void abort(const std::string& reason);
  // Graceful shutdown (collective: every rank calls it): flushes the issued collectives,
  // then frees the communicator. A failure or options.timeout aborts it and throws.
  void finalize();

 private:
  void init(const ncclUniqueId& id, int rank, int size, int device, const std::string& host);
  template <typename Issue>
  NcclWorkPtr launch(std::string description, cudaEvent_t ready, Issue&& issue);

  NcclCommOptions options_;
  int uncaught_at_start_ = 0;  // std::uncaught_exceptions() at construction
  CudaStream stream_;
  std::shared_ptr<detail::NcclState> state_;
};

}  // namespace dp
