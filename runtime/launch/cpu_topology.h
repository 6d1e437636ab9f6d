#pragma once
// What Linux's sysfs says about this machine's CPUs, read from a root that a test can point at
// a fake tree: the cpulist format, and the physical cores Open MPI counts as slots.
#include <string>
#include <vector>

namespace dp {

// "0-3,8-11" (sysfs' cpulist: online, local_cpulist, ...) into sorted distinct CPU numbers;
// an empty (or all-blank) list is no CPU. Throws dp::Error naming `what` on anything else.
std::vector<int> parse_cpulist(const std::string& text, const std::string& what);
// The other way round, ranges joined: {0,1,2,3,8} -> "0-3,8".
std::string format_cpulist(const std::vector<int>& cpus);

// "/sys", or DPRUN_SYSFS_ROOT (the tests' fake trees).
std::string sysfs_root();

// This process's CPU affinity mask (sched_getaffinity), sorted; empty when it cannot be read.
std::vector<int> affinity_cpus();

// The CPUs this process's cgroup allows (`cgroup_file`: /proc/self/cgroup's text; the cpuset
// files under `root`/fs/cgroup: v2's cpuset.cpus.effective, v1's cpuset controller's
// cpuset.cpus), sorted; empty when there is none to read. Open MPI's binding keeps within
// a container's cpuset but not within a taskset mask: the two differ by this.
std::vector<int> cgroup_cpus(const std::string& root, const std::string& cgroup_file);

// Physical cores among `usable` (this process's mask) that are online: distinct
// (physical_package_id, core_id) pairs under ROOT/devices/system/cpu/cpuN/topology, as Open
// MPI's default slots and --bind-to core count them; SMT siblings are one core. A CPU whose
// topology cannot be read counts as a core of its own (what sysconf would have said).
int count_physical_cores(const std::string& root, const std::vector<int>& usable);

}  // namespace dp
