#pragma once
// `dprun launch`: from what the machine has (GPUs, cores), a hostfile or a Slurm allocation,
// the mpirun (or srun) command line that starts one dprun process per GPU, or per core on a
// CPU-only machine. Pure: the launcher gathers the facts and runs the result.
#include <string>
#include <vector>

namespace dp {

struct HostSlots {
  std::string host;
  int slots = 0;  // 0: not given (the local machine's count is assumed)
};

// Open MPI hostfile lines: "host", "host slots=N" (also max_slots=, ignored), comments (#)
// and blank lines. Throws dp::Error naming the file and the line.
std::vector<HostSlots> parse_hostfile(const std::string& text, const std::string& path);

struct LaunchFacts {
  int gpus = 0;   // visible on this machine
  int cores = 1;  // online CPUs
  bool root = false;
  // Inside a Slurm allocation (SLURM_JOB_ID set): its tasks and nodes.
  bool in_slurm = false;
  int slurm_ntasks = 0;
  int slurm_nnodes = 0;
};

struct LaunchRequest {
  std::string np = "auto";  // "auto" or a count
  std::string hostfile;     // path, already read into `hosts`
  std::vector<HostSlots> hosts;
  bool slurm = false;                    // --slurm: srun --mpi=pmix inside the allocation
  std::string mpirun = "mpirun";         // or srun (with slurm)
  std::string dprun = "dprun";           // this binary's path
  std::vector<std::string> mpirun_args;  // --mpirun-arg, passed as given
  std::vector<std::string> dprun_args;   // after "--"
};

struct LaunchPlan {
  std::vector<std::string> argv;
  int np = 0;
  int per_host = 0;
  std::string why;  // "1 GPU per rank: 8 GPUs on this host" ...
};

LaunchPlan plan_launch(const LaunchRequest& req, const LaunchFacts& facts);

// The command line as a shell would read it back (arguments quoted where needed).
std::string shell_join(const std::vector<std::string>& argv);

}  // namespace dp
