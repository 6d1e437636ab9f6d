#pragma once
// Which device a rank trains on and which backend reduces its gradients: --device and
// --backend resolved against what the node has (DESIGN.md, "The process model"). Pure (the
// visible GPU count and the build's abilities are arguments), so every rule is unit-tested
// on machines without a GPU.
#include <string>

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
// GPU is required; cuda:N: that GPU. Backend auto: nccl for CUDA, mpi for the CPU. Ranks of
// one node on one GPU: an error under NCCL (it refuses that), and under MPI unless
// allow_device_sharing. Throws dp::Error naming the rank and what to change.
DevicePlan plan_device(const DeviceRequest& request, const NodeFacts& node);

}  // namespace dp
