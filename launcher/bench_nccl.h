#pragma once
// The NCCL column of `dprun bench-allreduce`: the same sizes through dprun's NCCL process group
// (runtime/comm/cuda/nccl_process_group), device buffers, timed from the host as the Reducer
// waits on it (issue + wait(), not GPU events: what a training step pays). nccl-tests times GPU
// events; bench_gpu_comm (tests/bench) gives those.
//
// Present only where the build has NCCL and EVERY rank sees a GPU (the ranks agree first, so a
// job with one GPU-less rank skips the column everywhere instead of hanging in ncclCommInitRank).
// One rank per GPU, as NCCL requires: cuda:(local rank % visible GPUs).
#include <mpi.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "runtime/comm/mpi_runtime.h"
#include "runtime/comm/process_group.h"
#include "runtime/core/tensor.h"

namespace dp {

class NcclBenchColumn {
 public:
  // Collective over MPI_COMM_WORLD. `mode`: "auto" (when every rank can), "on" (an error naming
  // the rank that cannot), "off". Null when the column is not run; `why_not` then says why.
  static std::unique_ptr<NcclBenchColumn> create(const std::string& mode, const MpiInfo& info,
                                                 size_t max_bytes,
                                                 std::chrono::milliseconds timeout,
                                                 std::string& why_not);
  ~NcclBenchColumn();
  NcclBenchColumn(const NcclBenchColumn&) = delete;
  NcclBenchColumn& operator=(const NcclBenchColumn&) = delete;

  // The first `count` elements of a device buffer of `dtype` (f32 or bf16), reused across sizes.
  Tensor buffer(size_t count, DType dtype);
  // One sum all-reduce of `t`, waited for.
  void allreduce(Tensor& t);
  const std::string& device() const { return device_name_; }

 private:
  NcclBenchColumn(std::unique_ptr<ProcessGroup> pg, Device device, size_t max_bytes,
                  std::chrono::milliseconds timeout);
  std::unique_ptr<ProcessGroup> pg_;
  Device device_;
  std::string device_name_;
  size_t max_bytes_;
  std::chrono::milliseconds timeout_;
  Tensor f32_, bf16_;  // allocated on first use
};

}  // namespace dp
