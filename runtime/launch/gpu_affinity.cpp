#include "runtime/launch/gpu_affinity.h"

#include <dirent.h>
#include <sched.h>
#include <sys/types.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iterator>
#include <sstream>

#include <fmt/format.h>

#include "runtime/core/device.h"
#include "runtime/core/error.h"
#include "runtime/core/log.h"
#include "runtime/launch/cpu_topology.h"

namespace dp {

std::string pci_sysfs_name(const std::string& bus_id) {
  std::string id;
  for (char c : bus_id) {
    if (std::isspace(static_cast<unsigned char>(c)) == 0) {
      id += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  // sysfs writes a 4-digit domain; NVML pads it to 8.
  const size_t colon = id.find(':');
  if (colon != id.npos && colon > 4 && id.find_first_not_of('0') >= colon - 4) {
    id.erase(0, colon - 4);
  }
  return id;
}

GpuAffinity plan_gpu_affinity(const std::string& root, const std::string& gpu,
                              const std::string& bus_id, const std::vector<int>& current) {
  GpuAffinity out;
  const std::string path = root + "/bus/pci/devices/" + pci_sysfs_name(bus_id) + "/local_cpulist";
  std::ifstream in(path);
  std::ostringstream text;
  if (in.is_open()) text << in.rdbuf();
  std::vector<int> local;
  try {
    DP_CHECK(in.is_open() && !in.bad(), "cannot read {}", path);
    local = parse_cpulist(text.str(), path);
    DP_CHECK(!local.empty(), "{} lists no CPU", path);
  } catch (const std::exception& e) {
    out.note = fmt::format("{}: CPU affinity left as it is: {}", gpu, e.what());
    return out;
  }
  std::vector<int> mask = current;
  std::sort(mask.begin(), mask.end());
  if (mask.empty()) {
    out.note =
        fmt::format("{}: CPU affinity left as it is: this process's mask cannot be read", gpu);
    return out;
  }
  std::vector<int> near;
  std::set_intersection(mask.begin(), mask.end(), local.begin(), local.end(),
                        std::back_inserter(near));
  if (near.empty()) {
    out.note = fmt::format(
        "{}: CPU affinity left as it is: this process is bound to CPUs {}, none of them near the "
        "GPU ({}, {})",
        gpu, format_cpulist(mask), bus_id, format_cpulist(local));
  } else if (near.size() == mask.size()) {
    out.note = fmt::format("{}: CPU affinity left as it is: CPUs {}, all near the GPU ({}, {})",
                           gpu, format_cpulist(mask), bus_id, format_cpulist(local));
  } else {
    out.cpus = near;
    out.note =
        fmt::format("{}: bound to CPUs {}, the GPU's ({}, {}) among this process's {}", gpu,
                    format_cpulist(near), bus_id, format_cpulist(local), format_cpulist(mask));
  }
  return out;
}

namespace {

// sched_setaffinity sets one thread's mask: every thread there is now gets it.
std::string set_all_threads(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) {
    if (c < CPU_SETSIZE) CPU_SET(c, &set);
  }
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) {
    return ::sched_setaffinity(0, sizeof set, &set) == 0 ? "" : "sched_setaffinity failed";
  }
  std::string failed;
  while (const dirent* e = ::readdir(dir)) {
    const pid_t tid = static_cast<pid_t>(std::atoi(e->d_name));
    // A thread that ended meanwhile (ESRCH) needs no mask.
    if (tid > 0 && ::sched_setaffinity(tid, sizeof set, &set) != 0 && errno != ESRCH) {
      failed += fmt::format(" {}", tid);
    }
  }
  ::closedir(dir);
  return failed.empty() ? "" : "sched_setaffinity failed for thread(s)" + failed;
}

}  // namespace

void bind_near_gpu(int device) {
  const std::string gpu = fmt::format("cuda:{}", device);
  try {
    const std::string bus_id = cuda_pci_bus_id(device);
    if (bus_id.empty()) return;  // a build without CUDA
    const GpuAffinity plan = plan_gpu_affinity(sysfs_root(), gpu, bus_id, affinity_cpus());
    const std::string failed = plan.cpus.empty() ? "" : set_all_threads(plan.cpus);
    if (failed.empty()) {
      log::debug("{}", plan.note);
    } else {
      log::debug("{}: CPU affinity not set: {}", gpu, failed);
    }
  } catch (const std::exception& e) {
    log::debug("{}: CPU affinity left as it is: {}", gpu, e.what());
  }
}

}  // namespace dp
