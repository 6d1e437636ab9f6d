#include "runtime/launch/launch_plan.h"

#include <algorithm>
#include <sstream>

#include <fmt/format.h>

#include "runtime/core/error.h"

namespace dp {

namespace {

int parse_positive(const std::string& s, const std::string& what) {
  const bool digits =
      !s.empty() && s.size() < 8 && s.find_first_not_of("0123456789") == std::string::npos;
  DP_CHECK(digits && std::stoi(s) > 0, "{}: expected a whole number >= 1, got '{}'", what, s);
  return std::stoi(s);
}

}  // namespace

std::vector<HostSlots> parse_hostfile(const std::string& text, const std::string& path) {
  std::vector<HostSlots> hosts;
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::string host, word;
    if (!(words >> host)) continue;
    HostSlots h;
    h.host = host;
    while (words >> word) {
      const std::string where = fmt::format("--hosts {}:{}", path, n);
      if (word.rfind("slots=", 0) == 0) {
        h.slots = parse_positive(word.substr(6), where + ": slots");
      } else if (word.rfind("max_slots=", 0) == 0) {
        parse_positive(word.substr(10), where + ": max_slots");
      } else {
        fail("{}: unexpected '{}' (expected 'HOST [slots=N]')", where, word);
      }
    }
    DP_CHECK(std::none_of(hosts.begin(), hosts.end(),
                          [&](const HostSlots& o) { return o.host == h.host; }),
             "--hosts {}:{}: host {} is listed twice", path, n, h.host);
    hosts.push_back(h);
  }
  DP_CHECK(!hosts.empty(), "--hosts {}: lists no host", path);
  return hosts;
}

LaunchPlan plan_launch(const LaunchRequest& req, const LaunchFacts& f) {
  DP_CHECK(!(req.slurm && !req.hosts.empty()),
           "dprun launch: --slurm and --hosts exclude each other");
  DP_CHECK(!req.slurm || f.in_slurm,
           "dprun launch --slurm: not inside a Slurm allocation (no SLURM_JOB_ID): use sbatch or "
           "salloc, or launch without --slurm");
  LaunchPlan p;
  const bool gpu = f.gpus > 0;
  // One process per GPU (torchrun's --nproc-per-node gpu); without GPUs one per core, each
  // with one OpenBLAS thread (torchrun's "cpu"): the CPU path's fastest layout here.
  p.per_host = gpu ? f.gpus : std::max(1, f.cores);
  const std::string unit = gpu ? "GPU" : "core";
  const int explicit_np = req.np == "auto" ? 0 : parse_positive(req.np, "dprun launch -np");
  if (req.slurm) {
    p.np = explicit_np ? explicit_np : f.slurm_ntasks;
    DP_CHECK(p.np > 0, "dprun launch --slurm: the allocation has no tasks (SLURM_NTASKS)");
    p.why =
        fmt::format("{} rank(s): the Slurm allocation's tasks ({} node(s))", p.np, f.slurm_nnodes);
    p.argv = {req.mpirun == "mpirun" ? "srun" : req.mpirun, "--mpi=pmix",
              fmt::format("--ntasks={}", p.np)};
    if (!gpu) p.argv.push_back("--export=ALL,OPENBLAS_NUM_THREADS=1");
    for (const std::string& a : req.mpirun_args) p.argv.push_back(a);
    p.argv.push_back(req.dprun);
    for (const std::string& a : req.dprun_args) p.argv.push_back(a);
    return p;
  }
  p.argv = {req.mpirun};
  if (f.root) p.argv.push_back("--allow-run-as-root");  // mpirun refuses root otherwise
  int slots_total = 0;
  if (!req.hosts.empty()) {
    std::string list;
    for (const HostSlots& h : req.hosts) {
      const int n = h.slots > 0 ? h.slots : p.per_host;
      slots_total += n;
      list += fmt::format("{}{}:{}", list.empty() ? "" : ",", h.host, n);
    }
    p.argv.insert(p.argv.end(), {"--host", list});
    p.np = explicit_np ? explicit_np : slots_total;
    p.why = fmt::format("{} rank(s): {} host(s) from {}, {} slot(s)", p.np, req.hosts.size(),
                        req.hostfile, slots_total);
  } else {
    slots_total = p.per_host;
    p.np = explicit_np ? explicit_np : p.per_host;
    p.why = fmt::format("{} rank(s): {} {}(s) on this host", p.np, p.per_host, unit);
  }
  p.argv.insert(p.argv.end(), {"-np", std::to_string(p.np)});
  if (p.np > slots_total) {
    // More ranks than GPUs or cores: they must share, so no binding.
    p.argv.insert(p.argv.end(), {"--oversubscribe", "--bind-to", "none"});
    p.why += fmt::format(" (more than the {} slot(s): oversubscribed, unbound)", slots_total);
  } else if (gpu) {
    // A rank per GPU, its cores near it; CUDA_VISIBLE_DEVICES untouched (dprun picks the
    // local rank's GPU).
    p.argv.insert(p.argv.end(), {"--map-by", "slot", "--bind-to", "numa"});
  } else {
    p.argv.insert(p.argv.end(), {"--map-by", "core", "--bind-to", "core"});
  }
  if (!gpu) p.argv.insert(p.argv.end(), {"-x", "OPENBLAS_NUM_THREADS=1"});
  for (const std::string& a : req.mpirun_args) p.argv.push_back(a);
  p.argv.push_back(req.dprun);
  for (const std::string& a : req.dprun_args) p.argv.push_back(a);
  return p;
}

std::string shell_join(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& a : argv) {
    if (!out.empty()) out += ' ';
    const bool plain =
        !a.empty() &&
        a.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,+@%") ==
            std::string::npos;
    if (plain) {
      out += a;
      continue;
    }
    out += '\'';
    for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += '\'';
  }
  return out;
}

}  // namespace dp
