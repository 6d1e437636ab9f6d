// A GPU rank's CPU mask: its GPU's local CPUs (a fake /sys/bus/pci tree) within the mask it
// was started with, or the mask left alone.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "runtime/launch/cpu_topology.h"
#include "runtime/launch/gpu_affinity.h"
#include "tests/support/temp_dir.h"

using namespace dp;

namespace {

TEST(GpuAffinity, PciSysfsName) {
  EXPECT_EQ(pci_sysfs_name("0000:3B:00.0"), "0000:3b:00.0");      // cudaDeviceGetPCIBusId
  EXPECT_EQ(pci_sysfs_name("00000000:3B:00.0"), "0000:3b:00.0");  // NVML
  EXPECT_EQ(pci_sysfs_name("0001:C1:00.0\n"), "0001:c1:00.0");
}

class GpuAffinityPlan : public dp::test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    set_local("0-3,8-11\n");  // socket 0 of a 2 x 4-core SMT machine
  }
  void set_local(const std::string& list) {
    const std::string dev = path("bus/pci/devices/0000:3b:00.0");
    std::filesystem::create_directories(dev);
    write_text(dev + "/local_cpulist", list);
  }
  GpuAffinity plan(const std::string& mask) {
    return plan_gpu_affinity(dir_, "cuda:1", "0000:3B:00.0", parse_cpulist(mask, "mask"));
  }
};

TEST_F(GpuAffinityPlan, BindsToTheGpusCpusWithinTheMask) {
  GpuAffinity a = plan("0-15");
  EXPECT_EQ(format_cpulist(a.cpus), "0-3,8-11");
  EXPECT_MENTIONS(a.note, "cuda:1: bound to CPUs 0-3,8-11");
  a = plan("2-5");  // a cgroup's CPUs across both sockets: the near ones
  EXPECT_EQ(format_cpulist(a.cpus), "2-3");
}

TEST_F(GpuAffinityPlan, LeavesAMaskAlreadyNearOrChosenElsewhere) {
  GpuAffinity a = plan("1");  // bound by the user (or srun) to a core near the GPU
  EXPECT_TRUE(a.cpus.empty());
  EXPECT_MENTIONS(a.note, "all near the GPU");
  a = plan("4-7");  // bound away from the GPU by the user: theirs to keep
  EXPECT_TRUE(a.cpus.empty());
  EXPECT_MENTIONS(a.note, "none of them near the GPU");
  set_local("0-15\n");  // one NUMA node: every CPU is near
  EXPECT_TRUE(plan("0-15").cpus.empty());
}

TEST_F(GpuAffinityPlan, UnreadableSysfsLeavesTheMask) {
  set_local("garbage\n");
  GpuAffinity a = plan("0-15");
  EXPECT_TRUE(a.cpus.empty());
  EXPECT_MENTIONS(a.note, "local_cpulist");
  set_local("\n");
  EXPECT_TRUE(plan("0-15").cpus.empty());
  std::filesystem::remove_all(path("bus"));
  a = plan("0-15");
  EXPECT_TRUE(a.cpus.empty());
  EXPECT_MENTIONS(a.note, "cannot read");
}

}  // namespace
