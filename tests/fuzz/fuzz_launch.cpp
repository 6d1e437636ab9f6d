// What `dprun launch` and `dprun predict` read from users and from the system: hostfiles,
// SLURM_TASKS_PER_NODE, sysfs CPU lists (a GPU's local_cpulist, cpu/online) and --profile files.
// The first byte picks the parser, the rest is its text. One target for the lot: each parser is
// small, and a target of its own would cost .ci/run another minute.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/launch/cpu_topology.h"
#include "runtime/launch/gpu_affinity.h"
#include "runtime/launch/launch_plan.h"
#include "runtime/perf/run_profile.h"
#include "tests/fuzz/fuzz.h"
#include "tests/support/sample_profile.h"

namespace dp::fuzz {

namespace {

enum Parser : uint8_t {
  kHostfile,
  kTasksPerNode,
  kCpulist,
  kGpuAffinity,
  kOnline,
  kProfile,
  kCount
};

// `fn()`, where a dp::Error is a finding: a round trip of what was read, or a parser that is
// documented never to fail (fuzz_one's caller would take the error for the expected answer).
template <typename Fn>
auto no_error(const char* what, Fn&& fn) {
  try {
    return fn();
  } catch (const Error& e) {
    std::fprintf(stderr, "fuzz: %s: %s\n", what, e.what());
    require(false, what);
    throw;
  }
}

bool blank(std::string_view s) {
  return s.find_first_not_of(" \t\n\v\f\r") == std::string_view::npos;
}

// The hostfile's lines with comments cut, as the error's line numbers count them.
std::vector<std::string> hostfile_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t nl = text.find('\n', start);
    std::string line = text.substr(start, nl == text.npos ? text.npos : nl - start);
    lines.push_back(line.substr(0, line.find('#')));
    if (nl == text.npos) break;
    start = nl + 1;
  }
  return lines;
}

void fuzz_hostfile(const std::string& text) {
  const std::string path = "hosts.txt";
  const std::vector<std::string> lines = hostfile_lines(text);
  std::vector<HostSlots> hosts;
  try {
    hosts = parse_hostfile(text, path);
  } catch (const Error& e) {
    // "--hosts hosts.txt:N: ..." with N a line that has a host on it, or, for a file without
    // one, "--hosts hosts.txt: lists no host".
    const std::string msg = e.what(), head = "--hosts " + path;
    require(msg.rfind(head, 0) == 0, "a hostfile error starts with '--hosts FILE'");
    if (msg.compare(head.size(), 15, ": lists no host") == 0) {
      require(
          std::all_of(lines.begin(), lines.end(), [](const std::string& l) { return blank(l); }),
          "'lists no host' only for a file without a host");
      throw;
    }
    require(msg.size() > head.size() && msg[head.size()] == ':', "the error names a line");
    size_t n = 0, i = head.size() + 1;
    for (;
         i < msg.size() && i < head.size() + 10 && std::isdigit(static_cast<unsigned char>(msg[i]));
         ++i)
      n = n * 10 + static_cast<size_t>(msg[i] - '0');
    require(i < msg.size() && msg[i] == ':', "the error names a line");
    require(n >= 1 && n <= lines.size() && !blank(lines[n - 1]),
            "the line the error names has a host on it");
    throw;
  }
  // Every line with a word is one host, once, in order; slots 0 means "not given".
  require(hosts.size() == size_t(std::count_if(lines.begin(), lines.end(),
                                               [](const std::string& l) { return !blank(l); })),
          "one host per non-blank line");
  std::string again;
  for (size_t i = 0; i < hosts.size(); ++i) {
    const HostSlots& h = hosts[i];
    require(!h.host.empty() && h.host.find_first_of(" \t\n\v\f\r#:") == std::string::npos,
            "a host name is one word without '#' or ':'");
    require(h.slots >= 0 && h.max_slots >= 0, "slots and max_slots are not negative");
    require(h.max_slots == 0 || h.slots <= h.max_slots, "slots are within max_slots");
    for (size_t k = 0; k < i; ++k) require(hosts[k].host != h.host, "every host once");
    again += h.host;
    if (h.slots > 0) again += " slots=" + std::to_string(h.slots);
    if (h.max_slots > 0) again += " max_slots=" + std::to_string(h.max_slots);
    again += '\n';
  }
  const std::vector<HostSlots> back = no_error("the hosts written as a hostfile read back",
                                               [&] { return parse_hostfile(again, path); });
  require(back.size() == hosts.size(), "the hosts written as a hostfile read back");
  for (size_t i = 0; i < hosts.size(); ++i)
    require(back[i].host == hosts[i].host && back[i].slots == hosts[i].slots &&
                back[i].max_slots == hosts[i].max_slots,
            "the hosts written as a hostfile read back");
}

// SLURM_TASKS_PER_NODE as Slurm writes it, read here a character at a time (the parser splits
// at commas and parentheses): N or N(xM), comma-separated, every number of 1 to 7 digits.
// False where the value is not that; else the total and the smallest count.
bool tasks_per_node_reference(const std::string& v, int64_t* total, int64_t* fewest) {
  size_t i = 0;
  const auto number = [&](int64_t* out) {
    const size_t start = i;
    *out = 0;
    for (; i < v.size() && v[i] >= '0' && v[i] <= '9'; ++i)
      if (i - start < 7) *out = *out * 10 + (v[i] - '0');
    return i > start && i - start <= 7;
  };
  *total = 0;
  for (bool first_item = true;; first_item = false) {
    int64_t tasks = 0, nodes = 1;
    if (!number(&tasks)) return false;
    if (i < v.size() && v[i] == '(') {
      if (v.compare(i, 2, "(x") != 0) return false;
      i += 2;
      if (!number(&nodes) || i >= v.size() || v[i] != ')') return false;
      ++i;
    }
    if (first_item || tasks < *fewest) *fewest = tasks;
    *total += tasks * nodes;
    if (i == v.size()) return true;
    if (v[i++] != ',') return false;
  }
}

void fuzz_tasks_per_node(const std::string& value) {
  int64_t want_total = 0, want_fewest = 0;
  const bool valid = tasks_per_node_reference(value, &want_total, &want_fewest);
  int fewest = -1, total = 0;
  try {
    total = parse_slurm_tasks_per_node(value, &fewest);
  } catch (const Error& e) {
    require(std::string_view(e.what()).find("SLURM_TASKS_PER_NODE") != std::string_view::npos,
            "the error names SLURM_TASKS_PER_NODE");
    require(!valid || want_total <= 0 || want_total > 9999999,
            "a value Slurm could write, with 1 to 9999999 tasks, is read");
    throw;
  }
  require(valid, "only N and N(xM), comma-separated, are read");
  require(total > 0 && total == want_total, "the total is the sum of the expanded counts, > 0");
  require(fewest == want_fewest, "the fewest is the smallest item's count");
}

// Sorted, distinct, not negative, and the same list once formatted and read back.
void require_cpulist(const std::vector<int>& cpus, const std::string& what) {
  require(std::is_sorted(cpus.begin(), cpus.end()) &&
              std::adjacent_find(cpus.begin(), cpus.end()) == cpus.end(),
          "a CPU list is sorted and its CPUs distinct");
  require(cpus.empty() || cpus.front() >= 0, "CPU numbers are not negative");
  require(no_error("format_cpulist reads back",
                   [&] { return parse_cpulist(format_cpulist(cpus), what); }) == cpus,
          "format_cpulist reads back");
}

void fuzz_cpulist(const std::string& text) {
  const std::string what = "/sys/devices/system/cpu/online";
  std::vector<int> cpus;
  try {
    cpus = parse_cpulist(text, what);
  } catch (const Error& e) {
    require_file_and_position(e, what, "CPU list");
    throw;
  }
  require(cpus.empty() == blank(text), "no CPU for a blank list only");
  require_cpulist(cpus, what);
}

// A fake sysfs root in the scratch directory: 16 CPUs (2 sockets of 4 cores, 2 threads each, as
// tests/unit/test_cpu_topology.cpp) and one GPU's PCI device.
const std::string& fake_sysfs() {
  static const std::string root = [] {
    const std::string r = scratch_dir() + "/sys";
    for (int cpu = 0; cpu < 16; ++cpu) {
      const std::string topo = r + "/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology";
      std::filesystem::create_directories(topo);
      write_file(topo + "/physical_package_id", std::to_string((cpu % 8) / 4) + "\n");
      write_file(topo + "/core_id", std::to_string(cpu % 4) + "\n");
    }
    std::filesystem::create_directories(r + "/bus/pci/devices/0000:3b:00.0");
    return r;
  }();
  return root;
}

// Two bytes: this process's mask among CPUs 0-15.
std::vector<int> mask_of(std::string* text) {
  std::vector<int> mask;
  if (text->size() < 2) return mask;
  const unsigned bits = static_cast<uint8_t>((*text)[0]) | static_cast<uint8_t>((*text)[1]) << 8;
  for (int c = 0; c < 16; ++c)
    if (bits >> c & 1u) mask.push_back(c);
  text->erase(0, 2);
  return mask;
}

// Never an error (a rank starts whatever sysfs says): a mask within the GPU's CPUs and this
// process's, narrower than the latter, or none.
void fuzz_gpu_affinity(std::string text) {
  const std::vector<int> mask = mask_of(&text);
  const std::string file = fake_sysfs() + "/bus/pci/devices/0000:3b:00.0/local_cpulist";
  write_file(file, text);
  const GpuAffinity a = no_error("plan_gpu_affinity never fails", [&] {
    return plan_gpu_affinity(fake_sysfs(), "cuda:1", "00000000:3B:00.0", mask);
  });
  require(a.note.rfind("cuda:1: ", 0) == 0, "the note names the GPU");
  if (a.cpus.empty()) return;
  require_cpulist(a.cpus, file);
  const std::vector<int> local =
      no_error("a mask comes from a readable list", [&] { return parse_cpulist(text, file); });
  require(std::includes(mask.begin(), mask.end(), a.cpus.begin(), a.cpus.end()) &&
              std::includes(local.begin(), local.end(), a.cpus.begin(), a.cpus.end()),
          "the GPU's mask is among its local CPUs and this process's");
  require(a.cpus.size() < mask.size(), "a mask is set only where it narrows this process's");
}

// Never an error either: an unreadable cpu/online counts every CPU of the mask.
void fuzz_online(std::string text) {
  const std::vector<int> mask = mask_of(&text);
  write_file(fake_sysfs() + "/devices/system/cpu/online", text);
  const int cores = no_error("count_physical_cores never fails",
                             [&] { return count_physical_cores(fake_sysfs(), mask); });
  require(cores >= 0 && cores <= std::min<int>(8, int(mask.size())),
          "physical cores: at most one per usable CPU, and the 8 the tree has");
}

bool finite_not_negative(double v) {
  return std::isfinite(v) && v >= 0;
}

void require_fit(const AllReduceFit& f) {
  require(f.world >= 1 && finite_not_negative(f.alpha_us) && std::isfinite(f.us_per_byte) &&
              f.us_per_byte > 0,
          "an all-reduce fit has a world >= 1, a finite alpha >= 0 and a finite slope > 0");
}

void fuzz_profile(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("profile.json", data, size);
  RunProfile p;
  try {
    p = read_run_profile(path);
  } catch (const Error& e) {
    require(std::string_view(e.what()).rfind(path + ": ", 0) == 0,
            "a profile error starts with the file");
    throw;
  }
  // What dprun predict divides by, scales by or indexes with (run_profile.cpp: check_fields,
  // BackwardProfile::validate).
  const BackwardProfile& c = p.compute;
  require(!c.params.empty(), "a profile has parameters");
  require(finite_not_negative(c.pre_backward_us) && finite_not_negative(c.backward_us) &&
              finite_not_negative(c.post_backward_us),
          "step times are finite and not negative");
  for (const ParamTiming& t : c.params)
    require(t.bytes > 0 && finite_not_negative(t.ready_us), "a parameter has bytes and a time");
  require(p.own_ready_us.empty() || p.own_ready_us.size() == c.params.size(),
          "own ready times for all parameters or none");
  for (double t : p.own_ready_us) require(finite_not_negative(t), "own ready times are finite");
  require(p.world_size >= 1, "world_size >= 1");
  require(std::isfinite(p.wire_ratio) && p.wire_ratio > 0, "wire_ratio is finite and > 0");
  require(finite_not_negative(p.link_burst_bytes), "link_burst_bytes is finite and >= 0");
  require_fit(p.allreduce_idle);
  require_fit(p.allreduce_busy);
  std::vector<size_t> seen;
  for (const std::vector<size_t>& bucket : p.assignment) {
    require(!bucket.empty(), "no empty bucket");
    seen.insert(seen.end(), bucket.begin(), bucket.end());
  }
  std::sort(seen.begin(), seen.end());
  for (size_t i = 0; i < seen.size(); ++i) require(seen[i] == i, "buckets partition the params");
  require(seen.size() == c.params.size(), "buckets partition the params");
  require(p.measured.steps == 0 || (std::isfinite(p.measured.step_us) && p.measured.step_us > 0),
          "measured steps have a step time > 0");
  // What was read is what dprun writes back.
  const std::string again = scratch_dir() + "/again.json";
  no_error("a profile reads back as written", [&] {
    write_run_profile(again, p);
    require(to_json(read_run_profile(again)) == to_json(p), "a profile reads back as written");
  });
}

// The unit tests' profile, with the fields they leave at their defaults set.
RunProfile seed_profile() {
  RunProfile p = test::skewed_mlp_profile();
  p.hosts = 2;
  p.link_burst_bytes = 4000768;
  p.allreduce_busy = AllReduceFit{2, 60, 0.005, {{0, 60}, {1e6, 5060}}};
  p.first_bucket_mb = 1;
  p.bucket_cap_mb = 25;
  return p;
}

void write_seed(const std::string& dir, const std::string& name, Parser parser,
                const std::string& text) {
  write_file(dir + "/" + name, std::string(1, char(parser)) + text);
}

}  // namespace

void fuzz_one(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % kCount) {
    case kHostfile:
      return fuzz_hostfile(text);
    case kTasksPerNode:
      return fuzz_tasks_per_node(text);
    case kCpulist:
      return fuzz_cpulist(text);
    case kGpuAffinity:
      return fuzz_gpu_affinity(text);
    case kOnline:
      return fuzz_online(text);
    default:
      return fuzz_profile(data + 1, size - 1);
  }
}

void write_seeds(const std::string& dir) {
  write_seed(dir, "hostfile", kHostfile,
             "# cluster\nnode1 slots=4\nnode2\n\nnode3 slots=2 max_slots=8  # big\r\n"
             "node4 max_slots=2\n");
  write_seed(dir, "hostfile-colon", kHostfile, "a slots=1\nlocalhost:2\n");
  write_seed(dir, "hostfile-over-max", kHostfile, "a\nb slots=4 max_slots=2\n");
  write_seed(dir, "tasks", kTasksPerNode, "2(x3),1");
  write_seed(dir, "tasks-many", kTasksPerNode, "8,8(x2),4,1(x9999999)");
  write_seed(dir, "tasks-open", kTasksPerNode, "2(x3");
  write_seed(dir, "cpulist", kCpulist, "0-3,8-11\n");
  write_seed(dir, "cpulist-backwards", kCpulist, "3,1,1-2,7-5");
  // Found here: every repeat of a range was appended (2 GiB for these 4 KB).
  std::string wide;
  for (int i = 0; i < 400; ++i) wide += "0-1048575,";
  write_seed(dir, "cpulist-repeated", kCpulist, wide + "7");
  write_seed(dir, "local-cpulist", kGpuAffinity,
             "\xff\x0f"
             "0-7,16-23\n");
  write_seed(dir, "local-cpulist-none", kGpuAffinity,
             "\x00\xff"
             "0-7\n");
  write_seed(dir, "online", kOnline,
             "\xff\xff"
             "0-11,13\n");
  write_seed(dir, "online-bad", kOnline,
             "\x0f\x0f"
             "0-\n");
  write_seed(dir, "profile", kProfile, to_json(seed_profile()).dump(1) + "\n");  // as written
  // Written before own_ready_us, link_burst_bytes and hosts were recorded.
  RunProfile old = seed_profile();
  old.own_ready_us.clear();
  nlohmann::json j = to_json(old);
  j.erase("link_burst_bytes");
  j.erase("hosts");
  write_seed(dir, "profile-old", kProfile, j.dump());
  // Counts out of their type's range: get<int>() of 1e30 was undefined behaviour, -8 bytes
  // wrapped to 2^64 - 8.
  j = to_json(seed_profile());
  j["world_size"] = 1e30;
  write_seed(dir, "profile-world-1e30", kProfile, j.dump());
  j = to_json(seed_profile());
  j["compute"]["params"][2]["bytes"] = -8;
  write_seed(dir, "profile-bytes-negative", kProfile, j.dump());
}

}  // namespace dp::fuzz
