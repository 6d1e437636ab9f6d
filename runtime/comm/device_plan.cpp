#include "runtime/comm/device_plan.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "runtime/core/error.h"

namespace dp {

DevicePlan plan_device(const DeviceRequest& req, const NodeFacts& node) {
  const std::string& spec = req.device;
  const int n = node.visible_gpus;
  DevicePlan plan;
  // The spelling first: a malformed --device is the same mistake on every node.
  const DeviceSpec d = parse_device_spec(spec);
  if (d.kind == DeviceSpec::Kind::cpu) {
    plan.device = Device::cpu();
  } else if (d.kind == DeviceSpec::Kind::auto_pick) {
    // "auto" must never fail for lack of a GPU, nor pick one the build cannot drive.
    plan.device = node.cuda_built && n > 0 ? Device::cuda(node.local_rank % n) : Device::cpu();
  } else {
    DP_CHECK(node.cuda_built, "rank {}: --device {}: this dprun was built without CUDA", node.rank,
             spec);
    DP_CHECK(n > 0,
             "rank {}: --device {}: no CUDA GPU is visible on {} (no driver, or "
             "CUDA_VISIBLE_DEVICES is empty); use --device cpu",
             node.rank, spec, node.host);
    DP_CHECK(d.index < n,
             "rank {}: --device {}: device index {} out of range, {} has {} GPU(s) (cuda:0..{})",
             node.rank, spec, d.index, node.host, n, n - 1);
    plan.device = Device::cuda(d.index >= 0 ? d.index : node.local_rank % n);
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
  return plan;
}

void check_device_sharing(DevicePlan& plan, const DeviceRequest& req, const NodeFacts& node,
                          const std::vector<std::string>& ids) {
  plan.shares_device = false;
  if (!plan.device.is_cuda()) return;
  DP_CHECK(node.local_rank >= 0 && size_t(node.local_rank) < ids.size(),
           "rank {}: local rank {} but device identities of {} local ranks", node.rank,
           node.local_rank, ids.size());
  const std::string& mine = ids[size_t(node.local_rank)];
  std::vector<int> same;  // local ranks on this rank's GPU, this one included
  for (size_t i = 0; i < ids.size(); ++i)
    if (!mine.empty() && ids[i] == mine) same.push_back(int(i));
  plan.shares_device = same.size() > 1;
  if (!plan.shares_device) return;
  const std::string why =
      fmt::format("local ranks {} of {} all run on the same GPU ({}, {} here; --device {})",
                  fmt::join(same, ", "), node.host, mine, plan.device.str(), req.device);
  DP_CHECK(plan.backend != "nccl",
           "rank {}: {}; NCCL refuses two ranks on one GPU. Start at most one rank per GPU (check "
           "CUDA_VISIBLE_DEVICES and the launcher's GPU binding), or use --backend mpi "
           "--allow-device-sharing to let ranks share a GPU (host-staged, slower)",
           node.rank, why);
  DP_CHECK(req.allow_device_sharing,
           "rank {}: {}; several ranks would share one GPU. Pass --allow-device-sharing to allow "
           "it (with --backend mpi), or start at most one rank per GPU",
           node.rank, why);
}

}  // namespace dp
