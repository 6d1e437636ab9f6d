#include "launcher/launch.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/core/device.h"
#include "runtime/core/error.h"
#include "runtime/launch/cpu_topology.h"
#include "runtime/launch/launch_plan.h"

namespace dp {

namespace {

volatile sig_atomic_t g_child = 0;
volatile sig_atomic_t g_signals = 0;
volatile sig_atomic_t g_slurm_sigterm = 0;

const char kSlurmSigterm[] =
    "dprun launch: SIGTERM from Slurm: not passed on (Slurm sends it to the ranks too; they "
    "checkpoint and stop)\n";

// Whether process `pid` is known not to be Slurm's step daemon: its /proc/PID/comm reads and is
// not "slurmstepd", the sender of Slurm's own SIGTERMs (scancel, the time limit, preemption).
// Unknown counts as Slurm's: /proc mounted hidepid=2 hides root's slurmstepd from the job's
// user, and in a container's pid namespace the sender is pid 0; passing Slurm's SIGTERM on
// would make it the ranks' second signal (no checkpoint). Async-signal-safe: open, read.
bool known_not_slurmstepd(pid_t pid) {
  if (pid <= 0) return false;
  char path[32] = "/proc/";
  char digits[16];
  int n = 0;
  for (long v = pid; v > 0 && n < 15; v /= 10) digits[n++] = char('0' + v % 10);
  size_t at = 6;
  while (n > 0) path[at++] = digits[--n];
  const char tail[] = "/comm";
  for (size_t i = 0; i < sizeof tail; ++i) path[at + i] = tail[i];
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char comm[16] = {};
  const ssize_t got = ::read(fd, comm, sizeof comm - 1);
  ::close(fd);
  return got > 0 && !(got >= 10 && std::memcmp(comm, "slurmstepd", 10) == 0);
}

// Every stop request becomes SIGUSR1 for the job: mpirun passes SIGUSR1 on to the ranks (and
// exits 0 when they stop cleanly), where SIGTERM would make it report a failure; dprun treats
// them alike (a checkpoint at the next step boundary). The second request reaches the ranks as
// their second signal (exit at once); a third kills the launcher's child outright. Inside a
// Slurm job Slurm's SIGTERM (scancel, time limit, preemption) reaches every process of the job,
// the ranks, srun and mpirun included: passed on, it would be the ranks' second. Only that one
// is dropped: a SIGTERM known to come from anyone else (`timeout`, `kill` in the batch script)
// reaches nobody else, and is passed on.
void forward(int sig, siginfo_t* info, void*) {
  if (g_child <= 0) return;
  if (sig == SIGTERM && g_slurm_sigterm &&
      !(info != nullptr && known_not_slurmstepd(info->si_pid))) {
    (void)!::write(STDERR_FILENO, kSlurmSigterm, sizeof kSlurmSigterm - 1);
    return;
  }
  const int n = ++g_signals;
  ::kill(g_child, n >= 3 ? SIGKILL : SIGUSR1);
}

const char* kUsage =
    "Usage: dprun launch [-np N|auto] [--hosts FILE | --slurm | --no-slurm] [--mpirun PATH]\n"
    "                    [--mpirun-arg ARG]... [--dry-run] -- <dprun options>\n\n"
    "Starts one dprun process per GPU (per physical core, with one OpenBLAS thread each,\n"
    "without GPUs) through mpirun, with binding that fits (a GPU rank binds itself to its\n"
    "GPU's CPUs; CPU ranks on this host are bound to cores only when they fill its cores and\n"
    "no taskset narrowed the launcher's CPU mask); --hosts FILE (Open MPI hostfile:\n"
    "'HOST [slots=N] [max_slots=M]') across hosts. Inside a Slurm allocation (SLURM_JOB_ID\n"
    "set) and without --hosts, through srun --mpi=pmix, its tasks (--slurm: insist on it;\n"
    "--no-slurm: mpirun on this host, the way to run it inside an srun step). A GPU job\n"
    "without a task count is refused: give it a task per GPU (or -np).\n\n"
    "  -np N|auto        ranks in all (also -n, --np; torchrun's --nproc-per-node x --nnodes);\n"
    "                    auto (the default): one per GPU, or per physical core, on each host\n"
    "  --hosts FILE      run across the hosts of an Open MPI hostfile\n"
    "  --slurm           insist on the Slurm allocation (an error outside one)\n"
    "  --no-slurm        mpirun on this host even inside an allocation\n"
    "  --mpirun PATH     the mpirun to run (with Slurm: the srun)\n"
    "  --mpirun-arg ARG  one more argument for mpirun (or srun), before the program; repeatable\n"
    "  --dry-run         print the command (alone, on stdout) and run nothing\n\n"
    "Prints the command it runs (to stderr); SIGINT/SIGTERM/SIGUSR1/SIGHUP reach the ranks as\n"
    "SIGUSR1 (checkpoint and stop; a second one exits at once). Inside a Slurm job Slurm's\n"
    "own SIGTERM is not passed on: Slurm sends it to the ranks itself. Exit code: the job's;\n"
    "2 when the launcher refused its arguments or the machine and started nothing; 127 when\n"
    "the mpirun (or srun) could not be run.\n\n"
    "Example: dprun launch -np 4 -- --model cnn --data cifar10:DIR --epochs 5 --eval\n";

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  DP_CHECK(in.is_open(), "--hosts {}: cannot open the file", path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string self_path(const char* argv0) {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return argv0;
  buf[n] = '\0';
  return buf;
}

int env_int(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : 0;
}

std::string env_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Physical cores in `mask`, this process's (the ranks' slots: plan_launch keeps a narrowed mask
// by leaving them unbound); the online CPUs where sysfs or the mask cannot be read.
int usable_cores(const std::vector<int>& mask) {
  const int cores = mask.empty() ? 0 : count_physical_cores(sysfs_root(), mask);
  return cores > 0 ? cores : static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
}

}  // namespace

int launch_main(int argc, char** argv) {
  LaunchRequest req;
  bool dry_run = false;
  bool started = false;  // an error before the job started exits 2, not the job's 1
  try {
    int i = 2;
    auto value = [&](const std::string& opt) -> std::string {
      DP_CHECK(i + 1 < argc, "dprun launch: {} needs a value", opt);
      return argv[++i];
    };
    for (; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--") {
        ++i;
        break;
      }
      if (a == "-h" || a == "--help") {
        std::printf("%s", kUsage);
        return 0;
      }
      if (a == "-np" || a == "-n" || a == "--np") {
        req.np = value(a);
      } else if (a == "--hosts") {
        req.hostfile = value(a);
        req.hosts = parse_hostfile(read_file(req.hostfile), req.hostfile);
      } else if (a == "--slurm") {
        req.slurm = true;
      } else if (a == "--no-slurm") {
        req.no_slurm = true;
      } else if (a == "--mpirun") {
        req.mpirun = value(a);
      } else if (a == "--mpirun-arg") {
        req.mpirun_args.push_back(value(a));
      } else if (a == "--dry-run") {
        dry_run = true;
      } else {
        // torchrun's and horovodrun's spellings of the process count point to -np.
        const bool torchrun = a.rfind("--nproc", 0) == 0 || a.rfind("--nnodes", 0) == 0 ||
                              a == "--np-per-node" || a == "-H";
        fail("dprun launch: unknown option '{}' ({})\n{}", a,
             torchrun ? "the ranks in all are -np N; hosts come from --hosts FILE or Slurm"
                      : "dprun's own options go after '--'",
             kUsage);
      }
    }
    for (; i < argc; ++i) req.dprun_args.push_back(argv[i]);
    req.dprun = self_path(argv[0]);
    LaunchFacts facts;
    facts.gpus = cuda_device_count();
    const std::vector<int> mask = affinity_cpus();
    facts.cores = usable_cores(mask);
    // Narrowed within what the container's cpuset allows (which Open MPI's binding keeps to):
    // taskset or numactl, which it does not.
    const std::vector<int> allowed = cgroup_cpus(sysfs_root(), "/proc/self/cgroup");
    const long whole =
        allowed.empty() ? ::sysconf(_SC_NPROCESSORS_ONLN) : static_cast<long>(allowed.size());
    facts.mask_narrowed = !mask.empty() && static_cast<long>(mask.size()) < whole;
    facts.root = ::geteuid() == 0;
    facts.in_slurm = std::getenv("SLURM_JOB_ID") != nullptr;
    facts.slurm_job_id = env_str("SLURM_JOB_ID");
    facts.slurm_ntasks = env_int("SLURM_NTASKS");
    facts.slurm_tasks_per_node = env_str("SLURM_TASKS_PER_NODE");
    facts.slurm_nnodes = env_int("SLURM_JOB_NUM_NODES");
    facts.slurm_step_id = env_str("SLURM_STEP_ID");
    const LaunchPlan plan = plan_launch(req, facts);
    std::string shown;  // the settings as the job gets them: the user's own value stays
    for (const std::string& kv : plan.env) {
      const std::string name = kv.substr(0, kv.find('='));
      if (!dry_run) ::setenv(name.c_str(), kv.c_str() + name.size() + 1, 0);
      const char* v = std::getenv(name.c_str());
      // NAME='a b', not 'NAME=a b': quoted whole, a shell reads a command name, not a setting.
      shown += name + "=" + shell_join({v ? v : kv.c_str() + name.size() + 1}) + " ";
    }
    std::fprintf(stderr, "dprun launch: %s\n", plan.why.c_str());
    std::fflush(stderr);
    // A dry run's stdout is the command alone, one line a shell can run
    // (`cmd=$(dprun launch --dry-run ...)`); a real run keeps stdout for the job's.
    const std::string command = shown + shell_join(plan.argv);
    if (dry_run) {
      std::printf("%s\n", command.c_str());
      // The command is this run's result (`cmd=$(dprun launch --dry-run ...)`): a failed
      // write (a full disk, a closed pipe) must not exit 0.
      if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
        std::fprintf(stderr,
                     "dprun: error: dprun launch --dry-run: writing the command failed: %s\n",
                     std::strerror(errno));
        return 1;
      }
      return 0;
    }
    std::fprintf(stderr, "  %s\n", command.c_str());
    std::fflush(stderr);
    g_slurm_sigterm = plan.ranks_get_slurm_sigterm;

    // The job runs in a process group of its own: a terminal's Ctrl-C (SIGINT to the whole
    // foreground group) then reaches only the launcher, which turns it into SIGUSR1 (a
    // checkpoint, exit 0). In the launcher's group mpirun got the SIGINT itself and aborted
    // the ranks with SIGTERM (exit 1). The handlers are in place before fork and the signals
    // blocked across it, so a signal arriving meanwhile waits until g_child is known.
    const int kForwarded[] = {SIGINT, SIGTERM, SIGUSR1, SIGHUP};
    sigset_t forwarded, before;
    sigemptyset(&forwarded);
    for (int sig : kForwarded) sigaddset(&forwarded, sig);
    ::sigprocmask(SIG_BLOCK, &forwarded, &before);
    struct sigaction sa, saved[4];
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = forward;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 4; ++i) ::sigaction(kForwarded[i], &sa, &saved[i]);
    // The job's stdin: only an option that reads it (`--config /dev/stdin`) gets it. Otherwise
    // mpirun would read a script's stdin away from it (`while read ...; do dprun launch ...;
    // done < list` ran once), and a terminal stops mpirun outside the foreground group
    // (SIGTTIN: it forwards stdin to rank 0).
    const bool job_reads_stdin =
        std::any_of(plan.argv.begin(), plan.argv.end(), [](const std::string& a) {
          for (const char* name : {"/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"}) {
            const size_t n = std::strlen(name);
            if (a.size() >= n && a.compare(a.size() - n, n, name) == 0) return true;
          }
          return false;
        });
    const pid_t parent = ::getpid();
    const pid_t child = ::fork();
    if (child == 0) {
      // mpirun gets the dispositions and the mask the launcher was given, not its handlers.
      for (int i = 0; i < 4; ++i) ::sigaction(kForwarded[i], &saved[i], nullptr);
      ::sigprocmask(SIG_SETMASK, &before, nullptr);
      ::setpgid(0, 0);
      const int null_fd = job_reads_stdin ? -1 : ::open("/dev/null", O_RDONLY);
      if (null_fd >= 0 && null_fd != STDIN_FILENO) {
        ::dup2(null_fd, STDIN_FILENO);
        ::close(null_fd);
      }
      // Nothing would forward a Ctrl-C to the job once the launcher is gone (killed with -9,
      // say): its death asks the job to checkpoint and stop, as the launcher would.
      ::prctl(PR_SET_PDEATHSIG, SIGUSR1);
      if (::getppid() != parent) ::_exit(1);  // it died before prctl took effect
      std::vector<char*> args;
      for (const std::string& a : plan.argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      std::fprintf(stderr, "dprun: error: dprun launch: cannot run %s: %s\n", args[0],
                   std::strerror(errno));
      ::_exit(127);
    }
    if (child < 0) {
      const int err = errno;
      ::sigprocmask(SIG_SETMASK, &before, nullptr);
      fail("dprun launch: fork failed: {}", std::strerror(err));
    }
    // Also here: whichever of the two runs first, the group exists before a signal is sent.
    ::setpgid(child, child);
    g_child = child;
    started = true;
    ::sigprocmask(SIG_SETMASK, &before, nullptr);
    int status = 0;
    while (::waitpid(child, &status, 0) < 0) {
      DP_CHECK(errno == EINTR, "dprun launch: waitpid failed: {}", std::strerror(errno));
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dprun: error: %s\n", e.what());
    return started ? 1 : 2;
  }
}

}  // namespace dp
