#include "runtime/comm/device_plan.h"

#include <exception>

#include "runtime/core/error.h"

namespace dp {

DevicePlan plan_device(const DeviceRequest& req, const NodeFacts& node) {
  const std::string& spec = req.device;
  const int n = node.visible_gpus;
  DevicePlan plan;
  bool pinned_index = false;  // cuda:N: every local rank asked for the same GPU
  if (spec == "cpu") {
    plan.device = Device::cpu();
  } else if (spec == "auto") {
    // "auto" must never fail for lack of a GPU, nor pick one the build cannot drive.
    plan.device = node.cuda_built && n > 0 ? Device::cuda(node.local_rank % n) : Device::cpu();
  } else if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    DP_CHECK(node.cuda_built, "rank {}: --device {}: this dprun was built without CUDA", node.rank,
             spec);
    DP_CHECK(n > 0,
             "rank {}: --device {}: no CUDA GPU is visible on {} (no driver, or "
             "CUDA_VISIBLE_DEVICES is empty); use --device cpu",
             node.rank, spec, node.host);
    int idx = node.local_rank % n;
    if (spec != "cuda") {
      const std::string digits = spec.substr(5);
      size_t used = 0;
      try {
        idx = std::stoi(digits, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      DP_CHECK(!digits.empty() && used == digits.size(),
               "--device {}: expected cuda:N with a device index N", spec);
      DP_CHECK(idx >= 0 && idx < n,
               "rank {}: --device {}: device index {} out of range, {} has {} GPU(s) (cuda:0..{})",
               node.rank, spec, idx, node.host, n, n - 1);
      pinned_index = true;
    }
    plan.device = Device::cuda(idx);
  } else {
    fail("--device {}: unknown device (expected auto, cpu, cuda or cuda:N)", spec);
  }

  if (req.backend == "auto") {
    plan.backend = plan.device.is_cuda() ? "nccl" : "mpi";
  } else if (req.backend == "mpi" || req.backend == "nccl") {
    plan.backend = req.backend;
  } else {
    fail("--backend {}: unknown backend (expected auto, mpi or nccl)", req.backend);
  }
  if (plan.backend == "nccl") {
    DP_CHECK(node.nccl_built,
             "rank {}: --backend nccl: this dprun was built without NCCL; use "
             "--backend mpi",
             node.rank);
    DP_CHECK(plan.device.is_cuda(),
             "rank {}: --backend nccl reduces CUDA tensors, but this rank trains on {} (--device "
             "{}); use --device cuda or --backend mpi",
             node.rank, plan.device.str(), spec);
  }
  if (!plan.device.is_cuda()) return plan;

  plan.shares_device = node.local_size > n || (pinned_index && node.local_size > 1);
  if (!plan.shares_device) return plan;
  const std::string why =
      pinned_index ? fmt::format("all {} ranks on {} use {} (--device {})", node.local_size,
                                 node.host, plan.device.str(), spec)
                   : fmt::format("{} ranks run on {} but only {} GPU(s) are visible there",
                                 node.local_size, node.host, n);
  DP_CHECK(plan.backend != "nccl",
           "rank {}: {}; NCCL refuses two ranks on one GPU. Start at most {} rank(s) per node, or "
           "use --backend mpi --allow-device-sharing to let ranks share a GPU (host-staged, "
           "slower)",
           node.rank, why, pinned_index ? 1 : n);
  DP_CHECK(req.allow_device_sharing,
           "rank {}: {}; several ranks would share one GPU. Pass --allow-device-sharing to allow "
           "it (with --backend mpi), or start at most {} rank(s) per node",
           node.rank, why, pinned_index ? 1 : n);
  return plan;
}

}  // namespace dp
