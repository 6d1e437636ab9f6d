// dprun: one process per rank (mpirun / srun start them), each training one replica.
//
// Errors follow one path (DESIGN.md, "Errors"): anything wrong is a dp::Error, printed as
// "dprun: error: [rank R] ..." on stderr. Configuration and input problems are found on
// every rank and agreed on BEFORE the first collective, so every rank exits non-zero with a
// message and nobody hangs; a failure later, on some ranks only, aborts the whole job.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "launcher/bench_allreduce.h"
#include "launcher/config_origin.h"
#include "launcher/data_parallel_main.h"
#include "launcher/launch.h"
#include "launcher/options.h"
#include "launcher/predict.h"
#include "launcher/prepare_text.h"
#include "runtime/comm/device_plan.h"
#include "runtime/comm/mpi_process_group.h"
#include "runtime/comm/mpi_runtime.h"
#include "runtime/comm/nccl_backend.h"
#include "runtime/core/device.h"
#include "runtime/core/error.h"
#include "runtime/core/log.h"
#include "runtime/core/version.h"
#include "runtime/launch/gpu_affinity.h"
#include "runtime/ops/cpu/blas_core.h"
#include "runtime/ops/cpu/blas_threads.h"
#include "runtime/train/fault_injection.h"
#include "runtime/train/preemption.h"
#include "runtime/train/trainer.h"

namespace {

// Before MPI starts, the rank the launcher announced (MPI cannot say yet); then MPI's.
std::string g_rank;

void print_error(const char* what) {
  // The job ends now: mpirun's SIGTERM to the ranks that follows is not a preemption.
  dp::quiet_preemption_messages();
  std::fprintf(stderr, "dprun: error: [rank %s] %s\n", g_rank.c_str(), what);
}

// The deadline of the start-up and shut-down phases that wait for every rank: --timeout when
// it was read and valid, else its default (the options may be what failed).
std::chrono::milliseconds phase_timeout(const dp::LaunchOptions& o) {
  const double s = o.train.timeout_s;
  const double valid = std::isfinite(s) && s >= 0.001 && s <= 365 * 86400.0 ? s : 300;
  return std::chrono::milliseconds(static_cast<int64_t>(valid * 1000));
}

// Every rank reports whether its local step went well; all ranks learn the verdict. On a
// failure the failing ranks have printed their reason, the others say why they stop.
bool agree(const std::string& local_error, const char* phase, std::chrono::milliseconds timeout) {
  if (!local_error.empty()) print_error(local_error.c_str());
  const double timeout_s = double(timeout.count()) / 1000.0;
  dp::Agreement a = dp::agree_all_ok(local_error.empty(), timeout_s);
  if (a.timed_out) {
    // Rank 0 collects the reports: it names the silent ranks; the others can only name it.
    const std::string silent =
        g_rank == "0" ? "no report from " + dp::rank_list(a.silent) +
                            " (stuck reading input?, stopped or dead)"
                      : "no verdict from rank 0, which collects every rank's report (it or "
                        "another rank is stuck, stopped or dead)";
    std::fprintf(stderr,
                 "dprun: error: [rank %s] not every rank finished %s within %g s (--timeout): %s; "
                 "aborting the job\n",
                 g_rank.c_str(), phase, timeout_s, silent.c_str());
    dp::quiet_preemption_messages();
    dp::abort_job(1);
  }
  if (!a.all_ok && local_error.empty()) {
    std::fprintf(stderr, "dprun: error: [rank %s] stopping: rank %d failed %s (see its message)\n",
                 g_rank.c_str(), a.first_failed_rank, phase);
  }
  return a.all_ok;
}

// The text is the result: a failed write of it (a full disk) exits 1, as coreutils does. A
// reader that closed the pipe early (`dprun --help | head`) got what it wanted: SIGPIPE is
// ignored here (see main), so that is EPIPE, and no error.
int print_help_or_version(const dp::LaunchOptions& o) {
  if (o.help) std::printf("%s", o.help_text.c_str());
  if (o.version) std::printf("dprun %s\n", dp::dprun_version().c_str());
  if (std::fflush(stdout) == 0 && !std::ferror(stdout)) return 0;
  if (errno == EPIPE) return 0;
  std::fprintf(stderr, "dprun: error: writing the %s failed: %s\n", o.help ? "help" : "version",
               std::strerror(errno));
  return 1;
}

// Whether the command line may ask for --help, --version, --model list or --mode dp
// (parse_options decides, a --config file included): only then is it parsed before MPI starts.
bool needs_no_mpi(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help" || a == "--version" || a == "list" || a == "--model=list" ||
        a == "dp" || a == "--mode=dp" || a == "--config" || a.rfind("--config=", 0) == 0)
      return true;
  }
  return false;
}

// Thrown past phase 1's remaining work by a rank given --help or --version in a launch of
// several processes.
struct AskedToExit {};

enum class Asked { nowhere, everywhere, somewhere };

// --help and --version print and end the run only when every rank was given them: in an MPMD
// launch (mpirun -np 1 dprun A : -np 1 dprun B) a rank that ended alone would leave the
// others waiting for it until --timeout. One agreement when nobody asked, two when everyone
// did, three (the last one agree()'s, naming the ranks) when some did.
Asked agree_on_help_or_version(bool asked, std::chrono::milliseconds timeout) {
  const double timeout_s = double(timeout.count()) / 1000.0;
  const dp::Agreement none = dp::agree_all_ok(!asked, timeout_s);
  if (none.all_ok && !none.timed_out) return Asked::nowhere;
  const dp::Agreement all = dp::agree_all_ok(asked, timeout_s);
  if (all.all_ok && !all.timed_out) return Asked::everywhere;
  const std::string why =
      asked ? fmt::format(
                  "--help or --version was given to this rank but not to rank {}: "
                  "give it to every rank or to none",
                  all.first_failed_rank)
            : "";
  agree(why, "reading its options", timeout);
  return Asked::somewhere;
}

// --device and --backend against this node's GPUs. Every rank checks its own, and the
// ranks agree on the verdict before any collective (phase 1 below).
dp::DeviceRequest device_request(const dp::LaunchOptions& o) {
  dp::DeviceRequest req;
  req.device = o.device;
  req.backend = o.backend;
  req.allow_device_sharing = o.allow_device_sharing;
  return req;
}

dp::NodeFacts node_facts(const dp::MpiInfo& info) {
  dp::NodeFacts node;
  node.rank = info.rank;
  node.local_rank = info.local_rank;
  node.local_size = info.local_size;
  node.visible_gpus = dp::cuda_device_count();
  node.cuda_built = dp::cuda_compiled();
  node.nccl_built = dp::nccl_compiled();
  node.host = info.hostname;
  return node;
}

// Freeing the group waits for every rank (its shared-memory windows are freed together).
void free_process_group(std::unique_ptr<dp::ProcessGroup>& pg, std::chrono::milliseconds timeout) {
  const auto guard = dp::phase_deadline(g_rank, "freeing the process group", timeout, "--timeout");
  pg.reset();
}

}  // namespace

int main(int argc, char** argv) {
  dp::use_best_openblas_core(argv);  // before anything else: it may re-execute dprun
  // Subcommands that need no MPI run before it is initialised (and work without mpirun).
  if (argc >= 2 && std::string(argv[1]) == "prepare-text") return dp::prepare_text_main(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "launch") return dp::launch_main(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "predict") return dp::predict_main(argc, argv);
  // A training run's output is its side product: a closed pipe on stdout or stderr (`dprun ...
  // | tee log`, whose tee a Ctrl-C ends too; `| head`) is a failed write to ignore, not a
  // signal that kills the run before the checkpoint its stop promised. (Set after the
  // subcommands above: launch's mpirun inherits its dispositions, and predict's table is its
  // result, ended by SIGPIPE under `| head` as any filter's.)
  std::signal(SIGPIPE, SIG_IGN);
  g_rank = dp::launcher_rank();
  // Outside a launcher, --help, --version and --model list need no MPI: they must work where
  // MPI cannot start (a container without a network, a read-only TMPDIR) and where the user
  // asks because something is wrong. Under a launcher every rank agrees first (below), as an
  // MPMD launch needs.
  // --mode dp (one process, replicas as threads) likewise: it makes no MPI call.
  // Parsed once: a --config read from a pipe (/dev/stdin, <(...)) is empty the second time.
  std::optional<dp::LaunchOptions> early;
  const bool bench = argc >= 2 && std::string(argv[1]) == "bench-allreduce";
  if (g_rank == "?" && !bench && needs_no_mpi(argc, argv)) {
    dp::LaunchOptions& opts = early.emplace();
    try {
      opts = dp::parse_options(argc, argv);
    } catch (const std::exception& e) {
      g_rank = "0";  // one process: what MPI would have made it
      print_error(e.what());
      return 1;
    }
    if (opts.help || opts.version) return print_help_or_version(opts);
    if (opts.mode == "dp") {
      g_rank = "0";
      dp::log::set_rank(0, 1);
      dp::configure_blas_threads(1);
      dp::install_preemption_handlers(0);
      dp::set_preemption_checkpointing(!opts.train.checkpoint_dir.empty());
      dp::log::set_verbose(opts.verbose);
      return dp::data_parallel_main(opts, 0);
    }
  }
  std::optional<dp::MpiRuntime> mpi;
  try {
    mpi.emplace(&argc, &argv, dp::mpi_init_timeout_from_env());  // before --timeout exists
  } catch (const std::exception& e) {
    print_error(e.what());
    return 1;
  }
  const dp::MpiInfo& info = mpi->info();
  g_rank = std::to_string(info.rank);
  dp::log::set_rank(info.rank, info.size);
  dp::configure_blas_threads(info.local_size);  // before any GEMM, bench-allreduce's included
  if (bench) {
    try {
      return dp::bench_allreduce_main(argc, argv, info);
    } catch (const std::exception& e) {
      print_error(e.what());  // options are the same on every rank: every rank says it
      return 1;
    }
  }

  // From here a preemption signal is remembered, not fatal: the run checkpoints at its first
  // step boundary (Slurm may signal a job that is still loading its data).
  dp::install_preemption_handlers(info.rank);

  // Phase 1, local: options, data, model. Every rank does it and reports.
  std::string err;
  dp::LaunchOptions opts;
  std::optional<dp::Trainer> trainer;
  dp::DevicePlan plan;
  bool parsed = false;  // parse_options names the config file's lines in its own errors
  try {
    opts = early ? std::move(*early) : dp::parse_options(argc, argv);
    parsed = true;
    // From now on a preemption message knows whether a stop writes a checkpoint.
    dp::set_preemption_checkpointing(!opts.train.checkpoint_dir.empty());
    if (opts.help || opts.version) {
      if (info.size > 1) throw AskedToExit{};
      return print_help_or_version(opts);
    }
    dp::log::set_verbose(opts.verbose);
    // --mode dp: one process, no collectives. Several processes refuse it together: in an
    // MPMD launch the others may not have been given it.
    if (opts.mode == "dp") {
      if (info.size == 1) return dp::data_parallel_main(opts, info.rank);
      throw dp::Error(dp::data_parallel_world_error(info.size));
    }
    plan = dp::plan_device(device_request(opts), node_facts(info));
    // Before the trainer's threads start, so that they inherit the mask.
    if (plan.device.is_cuda()) dp::bind_near_gpu(plan.device.index);
  } catch (const AskedToExit&) {
    // --help or --version under a launcher of several processes: decided below, together.
  } catch (const std::exception& e) {
    err = parsed ? dp::with_config_origin(e.what(), opts.config_origins) : e.what();
  } catch (...) {
    err = "internal error: an unknown exception (please report it)";
  }
  std::string my_gpu;
  if (err.empty() && plan.device.is_cuda()) {
    try {
      my_gpu = dp::cuda_device_info(plan.device.index).uuid;
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  // The first meeting of the ranks is the timed agreement: a rank still reading its options
  // (a --config on a stalled file system) must not hold the others in a blocking collective.
  const std::chrono::milliseconds timeout = phase_timeout(opts);
  mpi->set_finalize_timeout(timeout, "--timeout");
  if (!agree(err, "reading its options", timeout)) return 1;
  switch (agree_on_help_or_version(info.size > 1 && (opts.help || opts.version), timeout)) {
    case Asked::everywhere:
      return info.rank == 0 ? print_help_or_version(opts) : 0;
    case Asked::somewhere:
      return 1;
    case Asked::nowhere:
      break;
  }
  // Every rank has arrived: which GPU each rank of the node picked, by UUID, decides whether
  // ranks share one.
  const std::vector<std::string> node_gpus = dp::node_allgather(my_gpu);
  if (err.empty()) {
    try {
      dp::check_device_sharing(plan, device_request(opts), node_facts(info), node_gpus);
      if (plan.shares_device) {
        dp::log::debug("{} is shared with other ranks of this node (--allow-device-sharing)",
                       plan.device.str());
      }
      opts.train.device = plan.device;
      trainer.emplace(opts.train, info.rank, info.size);
    } catch (const std::exception& e) {
      // The model's options and --data are checked here: a value from --config names its line.
      err = dp::with_config_origin(e.what(), opts.config_origins);
    }
  }
  if (!agree(err, "its configuration or input check", timeout)) return 1;

  // Phase 2, collective. The process group lives outside the try block: on a one-sided
  // failure the job must be aborted BEFORE its destructor joins a communication thread
  // that may be stuck in a collective with a dead or stalled peer. It is released before
  // MPI_Finalize (when `mpi` goes out of scope), after the trainer, whose gradients live in
  // the group's shared-memory buffers.
  std::unique_ptr<dp::ProcessGroup> pg;
  const dp::FaultInjection fault = dp::FaultInjection::from_env();
  try {
    fault.maybe_stall_at(info.rank, "process-group");
    {
      // Building the group waits for every rank in blocking calls (MPI_Comm_dup, the settings
      // check, shared-memory windows; NCCL: the unique id's broadcast, whose own init deadline
      // comes first): a deadline over them.
      const auto nccl_init_timeout = std::max(timeout, std::chrono::milliseconds(60 * 1000));
      const auto guard = dp::phase_deadline(
          g_rank, "building the process group",
          plan.backend == "nccl" ? timeout + nccl_init_timeout : timeout, "--timeout");
      if (plan.backend == "nccl") {
        dp::NcclProcessGroupOptions nccl_options;
        nccl_options.device = plan.device.index;
        nccl_options.timeout = timeout;
        nccl_options.init_timeout = nccl_init_timeout;
        pg = dp::make_nccl_process_group(MPI_COMM_WORLD, nccl_options);
      } else {
        dp::MpiProcessGroupOptions pg_options;
        pg_options.shared_memory = opts.train.shared_memory;
        pg_options.allreduce_algo =
            dp::parse_allreduce_algo(opts.train.allreduce_algo, "--allreduce-algo");
        pg_options.shm_timeout = timeout;
        pg_options.timeout = timeout;
        pg = std::make_unique<dp::MpiProcessGroup>(MPI_COMM_WORLD, pg_options);
      }
    }
    trainer->connect(*pg);
    trainer->run();
    // Training is over: a signal from here on (mpirun ending the job) stops no step.
    dp::quiet_preemption_messages();
  } catch (const dp::CollectiveError& e) {
    print_error(e.what());  // every rank raised it at the same point: end cleanly everywhere
    trainer.reset();
    free_process_group(pg, timeout);
    return 1;
  } catch (const std::exception& e) {
    print_error(e.what());
    if (trainer) trainer->flush_log();  // MPI_Abort runs no destructor
    if (pg) pg->abort(e.what());        // NCCL: stop this rank's kernels before MPI_Abort
    dp::abort_job(1);  // only some ranks may know: take the whole job down, no hang
  } catch (...) {
    print_error("internal error: an unknown exception (please report it)");
    if (pg) pg->abort("internal error");
    dp::abort_job(1);
  }
  trainer.reset();
  free_process_group(pg, timeout);
  fault.maybe_stall_at(info.rank, "finalize");
  return 0;  // MPI_Finalize, under its deadline, when `mpi` goes out of scope
}
