#pragma once
// `dprun launch`: from what the machine has (GPUs, cores), a hostfile or a Slurm allocation,
// the mpirun (or srun) command line that starts one dprun process per GPU, or per core on a
// CPU-only machine. Pure: the launcher gathers the facts and runs the result.
#include <string>
#include <vector>

namespace dp {

struct HostSlots {
  std::string host;
  int slots = 0;      // 0: not given (the local machine's count is assumed, up to max_slots)
  int max_slots = 0;  // 0: not given (no limit)
};

// Open MPI hostfile lines: "host", "host slots=N", "host [slots=N] max_slots=M", comments (#)
// and blank lines. Throws dp::Error naming the file and the line, also for "host:N" (not
// hostfile syntax: Open MPI refuses it) and for slots above max_slots (as mpirun does).
std::vector<HostSlots> parse_hostfile(const std::string& text, const std::string& path);

// SLURM_TASKS_PER_NODE ("2(x3),1": 2 tasks on each of 3 nodes, then 1) as a total (7);
// `fewest`, where given, gets the smallest node's count (1).
// Throws dp::Error naming the variable on anything else.
int parse_slurm_tasks_per_node(const std::string& value, int* fewest = nullptr);

struct LaunchFacts {
  int gpus = 0;   // visible on this machine
  int cores = 1;  // physical cores (not SMT threads) online and in this process's mask
  // The mask holds fewer CPUs than are online (taskset, numactl): Open MPI 4.1's --bind-to
  // core ignores such a mask and binds to the machine's first cores.
  bool mask_narrowed = false;
  bool root = false;
  // Inside a Slurm allocation (SLURM_JOB_ID set): its id, tasks and nodes. SLURM_NTASKS is
  // set only where the job asked for a task count (-n); SLURM_TASKS_PER_NODE always is.
  bool in_slurm = false;
  std::string slurm_job_id;
  int slurm_ntasks = 0;
  std::string slurm_tasks_per_node;
  int slurm_nnodes = 0;
  // SLURM_STEP_ID as found: set inside an srun step, whose CPUs a nested srun would wait for
  // forever; also set (to a special id) in salloc's interactive step, which holds none.
  std::string slurm_step_id;
};

struct LaunchRequest {
  std::string np = "auto";  // "auto" or a count
  std::string hostfile;     // path, already read into `hosts`
  std::vector<HostSlots> hosts;
  // Inside a Slurm allocation the ranks start through srun unless --hosts or --no-slurm says
  // otherwise; --slurm insists on it (and fails outside an allocation).
  bool slurm = false;
  bool no_slurm = false;
  std::string mpirun;                    // --mpirun: the mpirun (with Slurm: the srun) to run
  std::string dprun = "dprun";           // this binary's path
  std::vector<std::string> mpirun_args;  // --mpirun-arg, passed as given
  std::vector<std::string> dprun_args;   // after "--"
};

struct LaunchPlan {
  std::vector<std::string> argv;
  int np = 0;
  int per_host = 0;
  bool slurm = false;  // srun inside the allocation
  // Inside a Slurm job: Slurm sends its SIGTERM (scancel, time limit, preemption) to every
  // process of the job, the ranks included, so the launcher must not pass it on (a second
  // signal makes the ranks exit without their checkpoint).
  bool ranks_get_slurm_sigterm = false;
  // NAME=VALUE for the job's environment, where it has no NAME already.
  std::vector<std::string> env;
  std::string why;  // "1 GPU per rank: 8 GPUs on this host" ...
};

LaunchPlan plan_launch(const LaunchRequest& req, const LaunchFacts& facts);

// The command line as a shell would read it back (arguments quoted where needed).
std::string shell_join(const std::vector<std::string>& argv);

}  // namespace dp
