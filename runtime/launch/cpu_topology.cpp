#include "runtime/launch/cpu_topology.h"

#include <sched.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include <fmt/format.h>

#include "runtime/core/error.h"

namespace dp {

namespace {

// Far above any machine's CPU count, low enough that a corrupt range cannot exhaust memory.
constexpr long kMaxCpu = 1 << 20;

long parse_cpu(const std::string& s, const std::string& what, const std::string& list) {
  const bool digits = !s.empty() && s.size() <= 7 && s.find_first_not_of("0123456789") == s.npos;
  DP_CHECK(digits && std::stol(s) < kMaxCpu, "{}: cannot read the CPU list '{}' (at '{}')", what,
           list, s);
  return std::stol(s);
}

bool read_text(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in.is_open()) return false;
  std::ostringstream s;
  s << in.rdbuf();
  *out = s.str();
  return !in.bad();
}

bool read_int(const std::string& path, long* out) {
  std::string text;
  if (!read_text(path, &text)) return false;
  char* end = nullptr;
  *out = std::strtol(text.c_str(), &end, 10);
  return end != text.c_str();
}

}  // namespace

std::vector<int> parse_cpulist(const std::string& text, const std::string& what) {
  std::string list = text;
  list.erase(std::remove_if(list.begin(), list.end(),
                            [](unsigned char c) { return std::isspace(c) != 0; }),
             list.end());
  std::vector<int> cpus;
  if (list.empty()) return cpus;
  // Marked, not appended: ranges that overlap cost nothing more (appended, a 4 KB list that
  // repeats "0-1048575" asked for 2 GiB), and the CPUs come out sorted and distinct.
  std::vector<bool> listed;
  std::istringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    const size_t dash = item.find('-');
    const long lo = parse_cpu(item.substr(0, dash), what, list);
    const long hi = dash == item.npos ? lo : parse_cpu(item.substr(dash + 1), what, list);
    DP_CHECK(lo <= hi, "{}: cannot read the CPU list '{}' (range '{}' runs backwards)", what, list,
             item);
    if (listed.size() <= size_t(hi)) listed.resize(size_t(hi) + 1);
    std::fill(listed.begin() + lo, listed.begin() + hi + 1, true);
  }
  DP_CHECK(list.back() != ',', "{}: cannot read the CPU list '{}' (ends with ',')", what, list);
  for (size_t c = 0; c < listed.size(); ++c)
    if (listed[c]) cpus.push_back(static_cast<int>(c));
  return cpus;
}

std::string format_cpulist(const std::vector<int>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return out;
}

std::string sysfs_root() {
  const char* root = std::getenv("DPRUN_SYSFS_ROOT");
  return root != nullptr && *root != '\0' ? root : "/sys";
}

std::vector<int> affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

std::vector<int> cgroup_cpus(const std::string& root, const std::string& cgroup_file) {
  std::ifstream lines(cgroup_file);
  for (std::string line; std::getline(lines, line);) {
    // "0::/path" (v2) or "3:cpuset:/path" (v1; controllers may be joined by commas).
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    std::string file;
    if (controllers.empty()) {
      file = root + "/fs/cgroup" + path + "/cpuset.cpus.effective";
    } else if (("," + controllers + ",").find(",cpuset,") != std::string::npos) {
      file = root + "/fs/cgroup/cpuset" + path + "/cpuset.cpus";
    } else {
      continue;
    }
    std::ifstream in(file);
    std::string text;
    if (!std::getline(in, text)) continue;
    try {
      std::vector<int> cpus = parse_cpulist(text, file);
      if (!cpus.empty()) return cpus;
    } catch (const Error&) {
    }
  }
  return {};
}

int count_physical_cores(const std::string& root, const std::vector<int>& usable) {
  const std::string cpu_dir = root + "/devices/system/cpu";
  std::vector<int> online;
  std::string text;
  bool know_online = read_text(cpu_dir + "/online", &text);
  if (know_online) {
    try {
      online = parse_cpulist(text, cpu_dir + "/online");
    } catch (const Error&) {
      know_online = false;  // then every CPU of the mask counts
    }
  }
  std::set<std::pair<long, long>> cores;
  for (int cpu : usable) {
    if (know_online && !std::binary_search(online.begin(), online.end(), cpu)) continue;
    const std::string topo = fmt::format("{}/cpu{}/topology/", cpu_dir, cpu);
    long package = 0, core = 0;
    if (read_int(topo + "physical_package_id", &package) && read_int(topo + "core_id", &core)) {
      cores.emplace(package, core);
    } else {
      cores.emplace(-1, cpu);  // negative package: no real (package, core) pair collides
    }
  }
  return static_cast<int>(cores.size());
}

}  // namespace dp
