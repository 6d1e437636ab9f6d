// sysfs' CPU lists and physical cores, on fake /sys trees: dprun launch's rank count and a GPU
// rank's affinity come from them.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <filesystem>
#include <string>
#include <vector>

#include "runtime/launch/cpu_topology.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;

namespace {

std::vector<int> range(int lo, int hi) {
  std::vector<int> v;
  for (int c = lo; c <= hi; ++c) v.push_back(c);
  return v;
}

TEST(CpuList, ParsesSysfsLists) {
  EXPECT_EQ(parse_cpulist("0-3,8-11\n", "f"), (std::vector<int>{0, 1, 2, 3, 8, 9, 10, 11}));
  EXPECT_EQ(parse_cpulist("5", "f"), std::vector<int>{5});
  EXPECT_EQ(parse_cpulist("3,1,1-2", "f"), (std::vector<int>{1, 2, 3}));
  EXPECT_TRUE(parse_cpulist("\n", "f").empty());
  for (const char* bad : {"a", "3-1", "1,,2", "1,", "0-", "-1", "0-9999999", "1 2x"}) {
    EXPECT_MENTIONS(error_of([&] { parse_cpulist(bad, "cpu/online"); }), "cpu/online") << bad;
  }
  EXPECT_EQ(format_cpulist({0, 1, 2, 3, 8, 10, 11}), "0-3,8,10-11");
  EXPECT_EQ(format_cpulist({}), "");
}

TEST(CpuList, RepeatedRangesCostNoMoreMemoryThanOne) {
  // 400 copies of the widest range in 4 KB: each CPU was appended once per copy, 1.6 GB of ints
  // (2 GiB asked for); marked, the list is 2^20 CPUs, 4 MB, whatever repeats.
  std::string list;
  for (int i = 0; i < 400; ++i) list += "0-1048575,";
  list += "7";
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  const std::vector<int> cpus = parse_cpulist(list, "f");
  getrusage(RUSAGE_SELF, &after);
  EXPECT_EQ(cpus.size(), 1048576u);
  EXPECT_EQ(cpus.back(), 1048575);
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 256 * 1024) << "KiB of peak memory";
}

class PhysicalCores : public dp::test::TempDirTest {
 protected:
  // Two sockets of 4 cores, 2 threads each, numbered as Linux does: cpu0-3 are the first
  // threads of socket 0's cores, cpu4-7 socket 1's, cpu8-15 their siblings. core_id restarts
  // on each socket. Offline CPUs keep their topology here, so that only `online` excludes them.
  void SetUp() override {
    TempDirTest::SetUp();
    for (int cpu = 0; cpu < 16; ++cpu) {
      const std::string topo = path("devices/system/cpu/cpu" + std::to_string(cpu) + "/topology");
      std::filesystem::create_directories(topo);
      write_text(topo + "/physical_package_id", std::to_string((cpu % 8) / 4) + "\n");
      write_text(topo + "/core_id", std::to_string(cpu % 4) + "\n");
    }
  }
  void set_online(const std::string& list) { write_text(path("devices/system/cpu/online"), list); }
};

TEST_F(PhysicalCores, CountsCoresNotSmtThreads) {
  set_online("0-15\n");
  EXPECT_EQ(count_physical_cores(dir_, range(0, 15)), 8);
  EXPECT_EQ(count_physical_cores(dir_, {0, 8}), 1);  // a core's two threads
  EXPECT_EQ(count_physical_cores(dir_, {0, 4}), 2);  // core 0 of each socket
  EXPECT_EQ(count_physical_cores(dir_, {}), 0);
}

TEST_F(PhysicalCores, LeavesOfflineCpusOut) {
  set_online("0-6,8-14\n");  // socket 1's core 3 (cpu7, cpu15) offline
  EXPECT_EQ(count_physical_cores(dir_, range(0, 15)), 7);
  set_online("0-7\n");  // SMT off
  EXPECT_EQ(count_physical_cores(dir_, range(0, 15)), 8);
  EXPECT_EQ(count_physical_cores(dir_, {8, 9}), 0);
}

TEST_F(PhysicalCores, ACpuWithoutTopologyIsACoreOfItsOwn) {
  // No `online` file: every CPU of the mask counts.
  std::filesystem::remove_all(path("devices/system/cpu/cpu9/topology"));
  EXPECT_EQ(count_physical_cores(dir_, range(0, 15)), 9);
  std::filesystem::remove_all(path("devices"));
  EXPECT_EQ(count_physical_cores(dir_, range(0, 3)), 4);
}

}  // namespace

// A container's cpuset, which Open MPI's binding keeps to, from cgroup v2 or v1's cpuset
// controller; nothing where neither is there.
class CgroupCpus : public dp::test::TempDirTest {};

TEST_F(CgroupCpus, ReadsV2AndV1Cpusets) {
  std::filesystem::create_directories(path("fs/cgroup/job/x"));
  write_text(path("fs/cgroup/job/x/cpuset.cpus.effective"), "2-3,6\n");
  write_text(path("cg2"), "0::/job/x\n");
  EXPECT_EQ(cgroup_cpus(dir_, path("cg2")), (std::vector<int>{2, 3, 6}));
  std::filesystem::create_directories(path("fs/cgroup/cpuset/docker/abc"));
  write_text(path("fs/cgroup/cpuset/docker/abc/cpuset.cpus"), "0-1\n");
  write_text(path("cg1"), "4:memory:/docker/abc\n3:cpuset,cpu:/docker/abc\n0::/\n");
  EXPECT_EQ(cgroup_cpus(dir_, path("cg1")), (std::vector<int>{0, 1}));
  write_text(path("none"), "4:memory:/docker/abc\n0::/\n");  // v2 root: no cpuset file here
  EXPECT_TRUE(cgroup_cpus(dir_, path("none")).empty());
  EXPECT_TRUE(cgroup_cpus(dir_, path("missing")).empty());
}
