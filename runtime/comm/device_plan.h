#pragma once
// Which device a rank trains on and which backend reduces its gradients: --device and
// --backend resolved against what the node has (DESIGN.md, "The process model"). Pure (the
// visible GPU count and the build's abilities are arguments), so every rule is unit-tested
// on machines without a GPU.
#include <string>
#include <vector>

#include "runtime/core/device.h"

namespace dp {

struct DeviceRequest {
  std::string device = "auto";   // auto | cpu | cuda | cuda:N
  std::string backend = "auto";  // auto | mpi | nccl
  bool allow_device_sharing = false;
};

struct NodeFacts {
  int rank = 0;
  int local_rank = 0;
  int local_size = 1;
  int visible_gpus = 0;
  bool cuda_built = false;
  bool nccl_built = false;
  std::string host;
};

struct DevicePlan {
  Device device;
  std::string backend;         // "mpi" | "nccl"
  bool shares_device = false;  // another rank of this node drives the same GPU
};

// auto: cuda:<local_rank % visible> when GPUs are visible, else cpu; cuda: the same but a
// GPU is required; cuda:N: that GPU. Backend auto: nccl for CUDA, mpi for the CPU. Throws
// dp::Error naming the rank and what to change. Whether the GPU is shared is decided next,
// by check_device_sharing, from what every rank of the node picked.
DevicePlan plan_device(const DeviceRequest& request, const NodeFacts& node);

// Sets plan.shares_device from the physical identity (the GPU's UUID) of the device each
// local rank of the node picked: local_device_ids[i] is local rank i's ("" for a CPU rank).
// Counting visible GPUs is not enough: under Slurm's per-task binding (--gpus-per-task=1,
// --gpu-bind) every rank sees one GPU as cuda:0, yet they are all different GPUs. Ranks on
// one GPU are an error under NCCL (it refuses that), and under MPI unless
// allow_device_sharing.
void check_device_sharing(DevicePlan& plan, const DeviceRequest& request, const NodeFacts& node,
                          const std::vector<std::string>& local_device_ids);

}  // namespace dp
