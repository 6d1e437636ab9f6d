// plan_device: --device / --backend / --allow-device-sharing against a node's GPUs. The
// GPU count is an argument, so every rule is checked here without a GPU.
#include <gtest/gtest.h>

#include <string>

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

TEST(DevicePlan, MoreLocalRanksThanGpus) {
  // NCCL: refused, with the way out spelled.
  std::string m = error_of(req("auto"), node(1, 2, 1));
  EXPECT_NE(m.find("NCCL refuses two ranks on one GPU"), std::string::npos) << m;
  EXPECT_NE(m.find("--backend mpi --allow-device-sharing"), std::string::npos) << m;
  EXPECT_NE(m.find("rank 11"), std::string::npos) << m;
  // MPI without the flag: refused too; with it: shared.
  m = error_of(req("cuda", "mpi"), node(1, 2, 1));
  EXPECT_NE(m.find("--allow-device-sharing"), std::string::npos) << m;
  DevicePlan p = dp::plan_device(req("cuda", "mpi", true), node(3, 4, 1));
  EXPECT_EQ(p.device.str(), "cuda:0");
  EXPECT_TRUE(p.shares_device);
  p = dp::plan_device(req("cuda", "mpi", true), node(3, 4, 2));
  EXPECT_EQ(p.device.str(), "cuda:1");
  // cuda:N on every rank of a node is sharing as well.
  m = error_of(req("cuda:0", "nccl"), node(0, 2, 4));
  EXPECT_NE(m.find("NCCL refuses"), std::string::npos) << m;
  EXPECT_TRUE(dp::plan_device(req("cuda:0", "mpi", true), node(0, 2, 4)).shares_device);
  // The flag does not make NCCL accept it.
  m = error_of(req("cuda", "nccl", true), node(0, 2, 1));
  EXPECT_NE(m.find("NCCL refuses"), std::string::npos) << m;
}

}  // namespace
