#include "launcher/bench_nccl.h"

#include <utility>

#include <fmt/format.h>

#include "runtime/comm/nccl_backend.h"
#include "runtime/core/device.h"
#include "runtime/core/error.h"

namespace dp {

std::unique_ptr<NcclBenchColumn> NcclBenchColumn::create(const std::string& mode,
                                                         const MpiInfo& info, size_t max_bytes,
                                                         std::chrono::milliseconds timeout,
                                                         std::string& why_not) {
  DP_CHECK(mode == "auto" || mode == "on" || mode == "off",
           "bench-allreduce --nccl {}: expected auto, on or off", mode);
  if (mode == "off") {
    why_not = "--nccl off";
    return nullptr;
  }
  // Every rank says whether it can; all must, or nobody starts NCCL (a rank left out of
  // ncclCommInitRank would leave the others waiting in it).
  const int gpus = nccl_compiled() ? cuda_device_count() : 0;
  const int mine = gpus > 0 ? 1 : 0;
  int all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all || gpus == 0) {  // (all != 0 means this rank has one: gpus > 0)
    why_not = !nccl_compiled() ? "this build has no NCCL (built without CUDA)"
              : mine           ? "another rank sees no GPU"
                               : "no GPU visible";
    DP_CHECK(mode != "on", "bench-allreduce --nccl on: rank {}: {}", info.rank, why_not);
    return nullptr;
  }
  const Device device = Device::cuda(info.local_rank % gpus);
  cuda_set_current_device(device.index);
  NcclProcessGroupOptions o;
  o.device = device.index;
  o.timeout = timeout;
  o.init_timeout = timeout;
  return std::unique_ptr<NcclBenchColumn>(
      new NcclBenchColumn(make_nccl_process_group(MPI_COMM_WORLD, o), device, max_bytes, timeout));
}

NcclBenchColumn::NcclBenchColumn(std::unique_ptr<ProcessGroup> pg, Device device, size_t max_bytes,
                                 std::chrono::milliseconds timeout)
    : pg_(std::move(pg)),
      device_(device),
      device_name_(device.str()),
      max_bytes_(max_bytes),
      timeout_(timeout) {}

NcclBenchColumn::~NcclBenchColumn() = default;

Tensor NcclBenchColumn::buffer(size_t count, DType dtype) {
  DP_CHECK(dtype == DType::f32 || dtype == DType::bf16,
           "bench-allreduce: the NCCL column runs float and bfloat16, not {}", dtype_name(dtype));
  Tensor& whole = dtype == DType::f32 ? f32_ : bf16_;
  if (!whole.defined()) {
    whole = Tensor::zeros({int64_t(max_bytes_ / dtype_size(dtype))}, dtype, device_);
  }
  DP_CHECK(count <= whole.numel(), "bench-allreduce: {} elements exceed the NCCL buffer ({})",
           count, whole.numel());
  return whole.view(0, {int64_t(count)});
}

void NcclBenchColumn::allreduce(Tensor& t) {
  pg_->allreduce(t, ReduceOp::sum, "bench nccl")->wait(timeout_);
}

}  // namespace dp
