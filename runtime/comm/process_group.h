#pragma once
// The collective-communication interface every backend implements (MPI for CPU tensors
// now, NCCL for CUDA tensors next). Every call is asynchronous and returns a Work. All
// ranks must issue the same collectives in the same order with the same sizes; the
// Reducer guarantees that for gradients.
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/comm/flight_recorder.h"
#include "runtime/comm/work.h"
#include "runtime/core/tensor.h"

namespace dp {

enum class ReduceOp { sum, avg, min, max };
const char* reduce_op_name(ReduceOp op);

class ProcessGroup {
 public:
  static constexpr std::chrono::milliseconds kDefaultTimeout{std::chrono::minutes(5)};

  // `timeout` (positive): how long a wait() on this group's Works that names no deadline of
  // its own waits, and what bounds the group's internal waits (an allocate(), NCCL's staging
  // of CPU tensors). dprun's launcher passes --timeout.
  explicit ProcessGroup(std::chrono::milliseconds timeout = kDefaultTimeout);
  virtual ~ProcessGroup() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;
  // How this group's all-reduces move the bytes, for the run's header (e.g. "hierarchical, 2
  // nodes x 2 ranks"); empty where the backend has nothing to add.
  virtual std::string algorithm() const { return ""; }
  // Called on the error path just before the job is aborted: a backend whose collectives
  // run on a device (NCCL) stops them here, so that no kernel keeps waiting for a dead peer.
  // Must not throw. The default has nothing to stop.
  virtual void abort(const std::string& reason) { (void)reason; }

  // In place: every rank ends with op over all ranks' `t`. avg is sum / size.
  virtual WorkPtr allreduce(Tensor& t, ReduceOp op, const std::string& tag = "allreduce") = 0;
  // In place: every rank ends with root's `t`.
  virtual WorkPtr broadcast(Tensor& t, int root, const std::string& tag = "broadcast") = 0;
  // `out` holds size() * in.numel() elements: rank r's `in` lands at offset r * in.numel().
  virtual WorkPtr allgather(const Tensor& in, Tensor& out,
                            const std::string& tag = "allgather") = 0;
  // `timeout` (0: the group's timeout()) bounds this barrier alone, the wait for the slowest
  // rank included: for the barrier that ends a long local phase whose length varies by rank
  // (every rank sampling text), so that a drift the group's timeout would call a hang is
  // waited out there and not in the next collective.
  virtual WorkPtr barrier(const std::string& tag = "barrier",
                          std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) = 0;

  // A zero-filled 1-D buffer of `numel` elements placed where this group's collectives
  // move the least data: the MPI backend puts it in memory every rank of the node maps, so
  // that all-reducing it (or a view of it) needs no copies. The default is Tensor::zeros.
  // Collective: every rank calls it with the same numel and dtype, in the same order, and
  // uses the buffer (or the same view of it) in the same collectives, as with any tensor.
  // The buffer is valid only while this process group lives: destroy every tensor over it,
  // or at least stop touching them, before the group.
  // `device` is where the caller computes on the buffer (the Reducer passes its parameters'
  // device, so that gradients written by CUDA kernels land in device memory): a CUDA device
  // gives device memory (Tensor::zeros there) under every backend; the CPU default keeps
  // the backend's host placement.
  virtual Tensor allocate(size_t numel, DType dtype = DType::f32, Device device = Device::cpu());

  std::chrono::milliseconds timeout() const { return timeout_; }

  // The last collectives this group issued: the backend records every Work it hands out.
  FlightRecorder& flight_recorder() { return *flight_recorder_; }
  const FlightRecorder& flight_recorder() const { return *flight_recorder_; }

  // Backend side: a Work of this group. Its wait() defaults to timeout(), and a timeout of
  // any wait on it (or its failing with a CollectiveTimeout) writes this group's flight
  // recorder to stderr, once per group, and appends the recorder's summary to the error:
  // every path (buckets, the loss, eval totals, gather_strings, barriers) alike. Call it
  // after construction (it asks rank()). A positive `timeout` replaces timeout() for this
  // Work (a barrier's own).
  WorkPtr make_work(std::string description, uint64_t seq,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const;
  // What a Work of a one-rank group allows at least (Work::set_wait_floor).
  static constexpr std::chrono::milliseconds kOneRankWaitFloor{std::chrono::seconds(60)};

 private:
  std::chrono::milliseconds timeout_;
  // Shared with the Works' timeout reports through weak pointers: a Work that outlives its
  // group reports nothing instead of touching a dead recorder, and the recorder's ring of
  // Works makes no cycle.
  std::shared_ptr<FlightRecorder> flight_recorder_;
  // The Works' timeout report, made by the first make_work() (it needs rank()).
  mutable std::once_flag report_once_;
  mutable Work::TimeoutReport report_;
};

// For a collective timeout: writes `pg`'s full flight-recorder dump to stderr (the first
// time only: one dump per group) and returns the one-line summary for the error message,
// so that the ranks' combined stderr shows which rank fell behind.
std::string dump_flight_recorder(const ProcessGroup& pg);

}  // namespace dp
