// plan_device: --device / --backend / --allow-device-sharing against a node's GPUs. The
// GPU count is an argument, so every rule is checked here without a GPU.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/comm/device_plan.h"
#include "runtime/core/error.h"

namespace {

using dp::DevicePlan;
using dp::DeviceRequest;
using dp::NodeFacts;

NodeFacts node(int local_rank, int local_size, int gpus) {
  NodeFacts n;
  n.rank = 10 + local_rank;
  n.local_rank = local_rank;
  n.local_size = local_size;
  n.visible_gpus = gpus;
  n.cuda_built = true;
  n.nccl_built = true;
  n.host = "node7";
  return n;
}

DeviceRequest req(const std::string& device, const std::string& backend = "auto",
                  bool share = false) {
  DeviceRequest r;
  r.device = device;
  r.backend = backend;
  r.allow_device_sharing = share;
  return r;
}

std::string error_of(const DeviceRequest& r, const NodeFacts& n) {
  try {
    dp::plan_device(r, n);
  } catch (const dp::Error& e) {
    return e.what();
  }
  return "";
}

TEST(DevicePlan, AutoIsCpuAndMpiWithoutGpus) {
  DevicePlan p = dp::plan_device(req("auto"), node(1, 4, 0));
  EXPECT_TRUE(p.device.is_cpu());
  EXPECT_EQ(p.backend, "mpi");
  // A build without CUDA ignores GPUs it could not drive.
  NodeFacts n = node(0, 1, 2);
  n.cuda_built = false;
  EXPECT_TRUE(dp::plan_device(req("auto"), n).device.is_cpu());
}

TEST(DevicePlan, AutoPicksLocalRankModuloGpusAndNccl) {
  DevicePlan p = dp::plan_device(req("auto"), node(3, 4, 4));
  EXPECT_EQ(p.device.str(), "cuda:3");
  EXPECT_EQ(p.backend, "nccl");
  EXPECT_FALSE(p.shares_device);
  EXPECT_EQ(dp::plan_device(req("cuda"), node(1, 2, 8)).device.str(), "cuda:1");
  EXPECT_EQ(dp::plan_device(req("cuda:5"), node(0, 1, 8)).device.str(), "cuda:5");
  EXPECT_EQ(dp::plan_device(req("cpu"), node(0, 1, 8)).backend, "mpi");
  EXPECT_EQ(dp::plan_device(req("cuda", "mpi"), node(0, 2, 2)).backend, "mpi");
}

TEST(DevicePlan, CudaWithoutGpuIsAClearError) {
  std::string m = error_of(req("cuda"), node(0, 1, 0));
  EXPECT_NE(m.find("no CUDA GPU is visible on node7"), std::string::npos) << m;
  NodeFacts n = node(0, 1, 1);
  n.cuda_built = false;
  m = error_of(req("cuda:0"), n);
  EXPECT_NE(m.find("built without CUDA"), std::string::npos) << m;
  m = error_of(req("cuda:2"), node(0, 1, 2));
  EXPECT_NE(m.find("out of range"), std::string::npos) << m;
  m = error_of(req("cuda:x"), node(0, 1, 2));
  EXPECT_NE(m.find("expected cuda:N"), std::string::npos) << m;
  for (const char* junk : {"cuda:1abc", "cuda: 1", "cuda:+1"}) {
    m = error_of(req(junk), node(0, 1, 2));
    EXPECT_NE(m.find("expected cuda:N"), std::string::npos) << junk << ": " << m;
  }
  m = error_of(req("cuda:-1"), node(0, 1, 2));
  EXPECT_NE(m.find("must not be negative"), std::string::npos) << m;
  m = error_of(req("tpu"), node(0, 1, 2));
  EXPECT_NE(m.find("unknown device"), std::string::npos) << m;
}

TEST(DevicePlan, NcclNeedsCudaAndAnNcclBuild) {
  std::string m = error_of(req("cpu", "nccl"), node(0, 1, 1));
  EXPECT_NE(m.find("--backend nccl reduces CUDA tensors"), std::string::npos) << m;
  NodeFacts n = node(0, 1, 1);
  n.nccl_built = false;
  m = error_of(req("cuda", "nccl"), n);
  EXPECT_NE(m.find("built without NCCL"), std::string::npos) << m;
  m = error_of(req("cuda", "gloo"), node(0, 1, 1));
  EXPECT_NE(m.find("unknown backend"), std::string::npos) << m;
}

// plan_device then check_device_sharing, as dprun's main runs them: local rank i of the node
// ends up on the GPU whose UUID is ids[i].
DevicePlan plan_on_node(const DeviceRequest& r, const NodeFacts& n,
                        const std::vector<std::string>& ids) {
  DevicePlan p = dp::plan_device(r, n);
  dp::check_device_sharing(p, r, n, ids);
  return p;
}

std::string sharing_error(const DeviceRequest& r, const NodeFacts& n,
                          const std::vector<std::string>& ids) {
  try {
    plan_on_node(r, n, ids);
  } catch (const dp::Error& e) {
    return e.what();
  }
  return "";
}

// What every local rank picks when each sees all `gpus` GPUs of the node and asks `device`.
std::vector<std::string> ids_when_all_visible(int local_size, int gpus, int pinned = -1) {
  std::vector<std::string> ids;
  ids.reserve(size_t(local_size));
  for (int i = 0; i < local_size; ++i)
    ids.push_back("GPU-" + std::to_string(pinned >= 0 ? pinned : i % gpus));
  return ids;
}

TEST(DevicePlan, MoreLocalRanksThanGpus) {
  // NCCL: refused, with the way out spelled and the sharing ranks named.
  std::string m = sharing_error(req("auto"), node(1, 2, 1), ids_when_all_visible(2, 1));
  EXPECT_NE(m.find("NCCL refuses two ranks on one GPU"), std::string::npos) << m;
  EXPECT_NE(m.find("--backend mpi --allow-device-sharing"), std::string::npos) << m;
  EXPECT_NE(m.find("rank 11"), std::string::npos) << m;
  EXPECT_NE(m.find("local ranks 0, 1 of node7"), std::string::npos) << m;
  // MPI without the flag: refused too; with it: shared.
  m = sharing_error(req("cuda", "mpi"), node(1, 2, 1), ids_when_all_visible(2, 1));
  EXPECT_NE(m.find("--allow-device-sharing"), std::string::npos) << m;
  DevicePlan p = plan_on_node(req("cuda", "mpi", true), node(3, 4, 1), ids_when_all_visible(4, 1));
  EXPECT_EQ(p.device.str(), "cuda:0");
  EXPECT_TRUE(p.shares_device);
  p = plan_on_node(req("cuda", "mpi", true), node(3, 4, 2), ids_when_all_visible(4, 2));
  EXPECT_EQ(p.device.str(), "cuda:1");
  EXPECT_TRUE(p.shares_device) << "local ranks 1 and 3 both on the second GPU";
  // cuda:N on every rank of a node is sharing as well.
  m = sharing_error(req("cuda:0", "nccl"), node(0, 2, 4), ids_when_all_visible(2, 4, 0));
  EXPECT_NE(m.find("NCCL refuses"), std::string::npos) << m;
  EXPECT_TRUE(plan_on_node(req("cuda:0", "mpi", true), node(0, 2, 4), ids_when_all_visible(2, 4, 0))
                  .shares_device);
  // The flag does not make NCCL accept it.
  m = sharing_error(req("cuda", "nccl", true), node(0, 2, 1), ids_when_all_visible(2, 1));
  EXPECT_NE(m.find("NCCL refuses"), std::string::npos) << m;
  // As many ranks as GPUs: nobody shares.
  EXPECT_FALSE(plan_on_node(req("auto"), node(2, 4, 4), ids_when_all_visible(4, 4)).shares_device);
}

TEST(DevicePlan, SlurmPerTaskBindingIsNotSharing) {
  // srun --gpus-per-task=1: every rank sees exactly one GPU, as cuda:0, but a different one.
  const std::vector<std::string> ids = {"GPU-aa", "GPU-bb", "GPU-cc", "GPU-dd"};
  for (int r = 0; r < 4; ++r) {
    DevicePlan p = plan_on_node(req("auto"), node(r, 4, 1), ids);
    EXPECT_EQ(p.device.str(), "cuda:0");
    EXPECT_EQ(p.backend, "nccl");
    EXPECT_FALSE(p.shares_device) << "rank " << r;
  }
  // Two tasks bound to the same GPU by mistake: caught, by UUID.
  std::string m =
      sharing_error(req("auto"), node(2, 4, 1), {"GPU-aa", "GPU-bb", "GPU-aa", "GPU-dd"});
  EXPECT_NE(m.find("local ranks 0, 2 of node7 all run on the same GPU (GPU-aa"), std::string::npos)
      << m;
  // CPU ranks have no GPU to share.
  EXPECT_FALSE(plan_on_node(req("cpu"), node(1, 2, 1), {"", ""}).shares_device);
}

}  // namespace
