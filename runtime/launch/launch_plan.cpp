#include "runtime/launch/launch_plan.h"

#include <algorithm>
#include <cstdint>
#include <sstream>

#include <fmt/format.h>

#include "runtime/core/error.h"

namespace dp {

namespace {

// Seven digits at most: more ranks or slots than any job has, and the sums of them stay in int.
constexpr int kMaxPositive = 9999999;
int parse_positive(const std::string& s, const std::string& what) {
  const bool digits =
      !s.empty() && s.size() < 8 && s.find_first_not_of("0123456789") == std::string::npos;
  DP_CHECK(digits && std::stoi(s) > 0, "{}: expected a whole number from 1 to {}, got '{}'", what,
           kMaxPositive, s);
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
    const std::string where = fmt::format("--hosts {}:{}", path, n);
    // "host:N" is --host's syntax, not a hostfile's: Open MPI's --hostfile refuses it, and
    // passed on as "--host host:N:M" it would name a host "host:N".
    if (const size_t colon = host.find(':'); colon != std::string::npos) {
      const std::string name = host.substr(0, colon), count = host.substr(colon + 1);
      fail("{}: '{}': a hostfile names its slots as '{} slots={}', not with ':'", where, host,
           name.empty() ? "HOST" : name, count.empty() ? "N" : count);
    }
    HostSlots h;
    h.host = host;
    while (words >> word) {
      if (word.rfind("slots=", 0) == 0) {
        h.slots = parse_positive(word.substr(6), where + ": slots");
      } else if (word.rfind("max_slots=", 0) == 0) {
        h.max_slots = parse_positive(word.substr(10), where + ": max_slots");
      } else {
        fail("{}: unexpected '{}' (expected 'HOST [slots=N] [max_slots=M]')", where, word);
      }
    }
    DP_CHECK(h.max_slots == 0 || h.slots <= h.max_slots,
             "{}: slots={} is more than max_slots={} (mpirun refuses it too)", where, h.slots,
             h.max_slots);
    DP_CHECK(std::none_of(hosts.begin(), hosts.end(),
                          [&](const HostSlots& o) { return o.host == h.host; }),
             "{}: host {} is listed twice", where, h.host);
    hosts.push_back(h);
  }
  DP_CHECK(!hosts.empty(), "--hosts {}: lists no host", path);
  return hosts;
}

int parse_slurm_tasks_per_node(const std::string& value, int* fewest) {
  const auto bad = [&](const std::string& item) {
    fail("SLURM_TASKS_PER_NODE '{}': cannot read '{}' (expected N or N(xM), comma-separated)",
         value, item);
  };
  if (value.empty() || value.back() == ',') bad(value);
  int64_t total = 0;
  std::istringstream in(value);
  std::string item;
  for (bool first = true; std::getline(in, item, ','); first = false) {
    const size_t paren = item.find('(');
    const std::string tasks = item.substr(0, paren);
    int64_t nodes = 1;
    if (paren != std::string::npos) {
      if (item.size() < paren + 4 || item.compare(paren, 2, "(x") != 0 || item.back() != ')') {
        bad(item);
      }
      const std::string count = item.substr(paren + 2, item.size() - paren - 3);
      if (count.empty() || count.size() > 7 || count.find_first_not_of("0123456789") != count.npos)
        bad(item);
      nodes = std::stoll(count);
    }
    if (tasks.empty() || tasks.size() > 7 || tasks.find_first_not_of("0123456789") != tasks.npos)
      bad(item);
    // The first item, not "no task so far": after a leading 0 the next was taken as fewest.
    if (fewest && (first || std::stoi(tasks) < *fewest)) *fewest = std::stoi(tasks);
    total += std::stoll(tasks) * nodes;
    DP_CHECK(total <= kMaxPositive,
             "SLURM_TASKS_PER_NODE '{}': more tasks than dprun launch takes (at most {})", value,
             kMaxPositive);
  }
  DP_CHECK(total > 0, "SLURM_TASKS_PER_NODE '{}': no task", value);
  return static_cast<int>(total);
}

namespace {

// srun's own flags (--mpi, --ntasks, --kill-on-bad-exit) mean nothing to an MPI launcher.
bool is_mpi_launcher(const std::string& path) {
  const std::string name = path.substr(path.find_last_of('/') + 1);
  return name.rfind("mpirun", 0) == 0 || name.rfind("mpiexec", 0) == 0 || name == "orterun" ||
         name == "prterun";
}

// Inside an srun step (not the batch script, nor salloc's interactive step: their ids, like
// every special step's, are 0xfffffff0 and up in slurm.h, and they hold no CPUs).
bool in_srun_step(const LaunchFacts& f) {
  const std::string& id = f.slurm_step_id;
  if (!f.in_slurm || id.empty() || id.size() > 10 || id.find_first_not_of("0123456789") != id.npos)
    return false;
  return std::stoull(id) < 0xfffffff0ull;
}

LaunchPlan plan_slurm(const LaunchRequest& req, const LaunchFacts& f, int explicit_np, bool gpu) {
  // The step holds its CPUs: an srun started inside it waits for them without a word, forever.
  DP_CHECK(!in_srun_step(f),
           "dprun launch: running inside Slurm step {}.{} (under srun), whose CPUs an srun "
           "started from here would wait for forever: run dprun launch from the batch script or "
           "the salloc shell (it starts the ranks with srun itself), or {}--no-slurm to start "
           "them with mpirun inside this step",
           f.slurm_job_id.empty() ? "?" : f.slurm_job_id, f.slurm_step_id,
           req.slurm ? "replace --slurm with " : "add ");
  LaunchPlan p;
  p.slurm = true;
  p.per_host = gpu ? f.gpus : std::max(1, f.cores);
  const std::string srun = req.mpirun.empty() ? "srun" : req.mpirun;
  DP_CHECK(!is_mpi_launcher(srun),
           "dprun launch: --mpirun {}: inside a Slurm allocation dprun launch starts the ranks "
           "with srun (--mpirun names the srun to use); to run {} on this host, {}--no-slurm",
           srun, srun, req.slurm ? "replace --slurm with " : "add ");
  if (explicit_np > 0) {
    p.np = explicit_np;
  } else if (f.slurm_ntasks > 0) {
    p.np = f.slurm_ntasks;
  } else {
    // sbatch/salloc without -n: srun starts SLURM_TASKS_PER_NODE's tasks.
    DP_CHECK(!f.slurm_tasks_per_node.empty(),
             "dprun launch: the Slurm allocation has no tasks (neither SLURM_NTASKS nor "
             "SLURM_TASKS_PER_NODE is set): give -np N{}",
             req.slurm ? "" : ", or --no-slurm to run on this host through mpirun");
    int fewest = 0;
    p.np = parse_slurm_tasks_per_node(f.slurm_tasks_per_node, &fewest);
    // torchrun and `dprun launch` outside Slurm run a rank per GPU; srun runs no more than the
    // job's tasks, and a job that gave no task count has one per node. The other nodes are
    // taken to have this one's GPUs (a job's nodes are alike).
    DP_CHECK(!gpu || fewest >= f.gpus,
             "dprun launch: this node has {} GPU(s) but Slurm allocation {} gives a node {} "
             "task(s) (SLURM_TASKS_PER_NODE={}; the job asked for no task count): srun starts "
             "one rank per task, so {} GPU(s) would sit idle; ask for a task per GPU (sbatch "
             "--ntasks-per-node={}, or --gpus-per-task=1 with -n), or give -np N for N ranks",
             f.gpus, f.slurm_job_id.empty() ? "?" : f.slurm_job_id, fewest, f.slurm_tasks_per_node,
             f.gpus - fewest, f.gpus);
  }
  p.why = fmt::format("{} rank(s): the tasks of Slurm allocation {} ({} node(s))", p.np,
                      f.slurm_job_id.empty() ? "?" : f.slurm_job_id, f.slurm_nnodes);
  if (!req.slurm) p.why += ", through srun (--no-slurm: mpirun on this host instead)";
  // --kill-on-bad-exit: a rank that fails ends the step, as mpirun ends the job.
  p.argv = {srun, "--mpi=pmix", "--kill-on-bad-exit=1", fmt::format("--ntasks={}", p.np)};
  if (!gpu) p.argv.push_back("--export=ALL,OPENBLAS_NUM_THREADS=1");
  for (const std::string& a : req.mpirun_args) p.argv.push_back(a);
  p.argv.push_back(req.dprun);
  for (const std::string& a : req.dprun_args) p.argv.push_back(a);
  return p;
}

}  // namespace

LaunchPlan plan_launch(const LaunchRequest& req, const LaunchFacts& f) {
  DP_CHECK(!(req.slurm && req.no_slurm), "dprun launch: --slurm and --no-slurm exclude each other");
  DP_CHECK(!(req.slurm && !req.hosts.empty()),
           "dprun launch: --slurm and --hosts exclude each other");
  DP_CHECK(!req.slurm || f.in_slurm,
           "dprun launch --slurm: not inside a Slurm allocation (no SLURM_JOB_ID): use sbatch or "
           "salloc, or launch without --slurm");
  const bool gpu = f.gpus > 0;
  const int explicit_np = req.np == "auto" ? 0 : parse_positive(req.np, "dprun launch -np");
  if (req.slurm || (f.in_slurm && !req.no_slurm && req.hosts.empty())) {
    LaunchPlan p = plan_slurm(req, f, explicit_np, gpu);
    p.ranks_get_slurm_sigterm = true;
    return p;
  }
  LaunchPlan p;
  p.ranks_get_slurm_sigterm = f.in_slurm;
  if (f.in_slurm) {
    // Slurm's SIGTERM reaches mpirun too, which follows it with SIGTERM and SIGKILL of its own,
    // odls_base_sigkill_timeout seconds apart (1 by default): the ranks' second signal, before
    // their checkpoint. 20 s, as in dprun-multi-node.sbatch (Slurm's KillWait still bounds it).
    p.env.push_back("OMPI_MCA_odls_base_sigkill_timeout=20");
  }
  // One process per GPU (torchrun's --nproc-per-node gpu); without GPUs one per physical core,
  // each with one OpenBLAS thread (torchrun's "cpu"): the CPU path's fastest layout here, and
  // Open MPI's default slots and --bind-to core count physical cores, not SMT threads.
  p.per_host = gpu ? f.gpus : std::max(1, f.cores);
  const std::string unit = gpu ? "GPU" : "core";
  p.argv = {req.mpirun.empty() ? "mpirun" : req.mpirun};
  if (f.root) p.argv.push_back("--allow-run-as-root");  // mpirun refuses root otherwise
  if (f.in_slurm && req.no_slurm) {
    // Not the allocation's slots and nodes (mpirun reads them from Slurm, and inside an srun
    // step they are the step's: "not enough slots"), nor srun to start its daemons: this host.
    p.argv.insert(p.argv.end(), {"--mca", "ras", "^slurm", "--mca", "plm", "^slurm"});
  }
  int slots_total = 0;
  bool over_max = false;  // more ranks than slots, placed within the max_slots
  if (!req.hosts.empty()) {
    std::vector<int> counts;
    bool every_max = true, some_max = false;
    int64_t max_total = 0;
    for (const HostSlots& h : req.hosts) {
      const int n = h.slots > 0       ? h.slots
                    : h.max_slots > 0 ? std::min(p.per_host, h.max_slots)
                                      : p.per_host;
      counts.push_back(n);
      slots_total += n;
      every_max = every_max && h.max_slots > 0;
      some_max = some_max || h.max_slots > 0;
      max_total += h.max_slots;
    }
    p.np = explicit_np ? explicit_np : slots_total;
    DP_CHECK(!every_max || p.np <= max_total,
             "dprun launch -np {}: more ranks than the hosts of {} take (max_slots: {} in all)",
             p.np, req.hostfile, max_total);
    if (p.np > slots_total && some_max) {
      // --host cannot carry max_slots, and mpirun's --oversubscribe would spread the extra
      // ranks over every host: they are placed here instead, one at a time on each host that
      // has room, and --host names each host's share exactly.
      over_max = true;
      for (int extra = p.np - slots_total; extra > 0;) {
        for (size_t i = 0; i < counts.size() && extra > 0; ++i) {
          if (req.hosts[i].max_slots == 0 || counts[i] < req.hosts[i].max_slots) {
            ++counts[i];
            --extra;
          }
        }
      }
    }
    std::string list;
    for (size_t i = 0; i < counts.size(); ++i) {
      list += fmt::format("{}{}:{}", list.empty() ? "" : ",", req.hosts[i].host, counts[i]);
    }
    p.argv.insert(p.argv.end(), {"--host", list});
    p.why = fmt::format("{} rank(s): {} host(s) from {}, {} slot(s)", p.np, req.hosts.size(),
                        req.hostfile, slots_total);
  } else {
    slots_total = p.per_host;
    p.np = explicit_np ? explicit_np : p.per_host;
    p.why = fmt::format("{} rank(s): {} {}(s) on this host", p.np, p.per_host, unit);
  }
  p.argv.insert(p.argv.end(), {"-np", std::to_string(p.np)});
  if (over_max) {
    p.argv.insert(p.argv.end(), {"--map-by", "slot", "--bind-to", "none"});
    p.why +=
        fmt::format(" (more than the {} slot(s): placed within max_slots, unbound)", slots_total);
  } else if (p.np > slots_total) {
    // More ranks than GPUs or cores: they must share, so no binding.
    p.argv.insert(p.argv.end(), {"--oversubscribe", "--bind-to", "none"});
    p.why += fmt::format(" (more than the {} slot(s): oversubscribed, unbound)", slots_total);
  } else if (gpu) {
    // Unbound by mpirun: its --bind-to numa gives rank i NUMA node i mod N, whatever GPU the
    // rank drives; each rank binds itself to its GPU's CPUs (gpu_affinity.h).
    // CUDA_VISIBLE_DEVICES untouched: dprun picks the local rank's GPU.
    p.argv.insert(p.argv.end(), {"--map-by", "slot", "--bind-to", "none"});
  } else if (f.mask_narrowed && req.hosts.empty()) {
    // Unbound, the ranks keep the launcher's mask (taskset -c 2,3 dprun launch ...), which
    // mpirun's binding would leave for the machine's first cores.
    p.argv.insert(p.argv.end(), {"--bind-to", "none"});
    p.why += " (unbound: they keep this process's CPU mask)";
  } else if (p.np < slots_total) {
    // Fewer ranks than cores: bound, they all sit on the first cores, and so does every job
    // started beside them (each 2-3x slower while other cores idle). Unbound, the kernel
    // spreads them, as torchrun leaves its processes.
    p.argv.insert(p.argv.end(), {"--bind-to", "none"});
    p.why += fmt::format(" (fewer than the {} core(s): unbound)", slots_total);
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
