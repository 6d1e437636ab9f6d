#pragma once
// MPI's process-wide lifetime and the facts every rank learns from it first: rank and
// world size from MPI_COMM_WORLD, the local rank from MPI_COMM_TYPE_SHARED (one node's
// ranks). Started without a launcher, MPI runs as a singleton: world size 1.
#include <chrono>
#include <string>
#include <vector>

#include "runtime/comm/init_watchdog.h"

namespace dp {

struct MpiInfo {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
  std::string hostname;
};

class MpiRuntime {
 public:
  // Initialises MPI with MPI_THREAD_MULTIPLE when offered (the communication thread makes
  // the collective calls while the main thread may still query MPI), else the best level
  // offered as long as it is at least SERIALIZED. MPI_Init waits for every rank of the job:
  // if it has not returned within `init_timeout` (a rank never started, or stopped), this
  // rank says so on stderr and exits 1 (runtime/comm/init_watchdog.h), so that the launcher
  // ends the job instead of every rank hanging. The default reads DPRUN_INIT_TIMEOUT
  // (seconds; 300 without it).
  MpiRuntime(int* argc, char*** argv,
             std::chrono::milliseconds init_timeout = mpi_init_timeout_from_env());
  // MPI_Finalize, unless the job was aborted. It waits for every rank: if it has not returned
  // within the finalisation deadline (set_finalize_timeout; until then the initialisation's),
  // this rank says so and exits 1, as at MPI_Init.
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  const MpiInfo& info() const { return info_; }
  int thread_level() const { return thread_level_; }
  // `knob` names the setting in the deadline's message (dprun: "--timeout").
  void set_finalize_timeout(std::chrono::milliseconds timeout, std::string knob);

 private:
  MpiInfo info_;
  int thread_level_ = 0;
  std::chrono::milliseconds finalize_timeout_;
  std::string finalize_knob_ = "DPRUN_INIT_TIMEOUT";
};

// Ends every rank of the job now (MPI_Abort on MPI_COMM_WORLD), after flushing stdio.
[[noreturn]] void abort_job(int exit_code);

// Every rank contributes ok=true/false; all ranks learn whether every rank was ok and
// the lowest failing rank. Used to agree on configuration errors BEFORE any other
// collective, so that a bad flag on one rank ends all ranks cleanly instead of hanging.
struct Agreement {
  bool all_ok = true;
  int first_failed_rank = -1;
  bool timed_out = false;  // not every rank reported within the deadline
  // On timed_out, whom this rank did not hear from: on rank 0, which collects every rank's
  // report, the ranks that never reported; on the others, rank 0 (it sends the verdict).
  std::vector<int> silent;
};
// With timeout_s > 0 a rank that never reports (stuck reading its data, stopped, dead) ends
// the wait after that long with timed_out set, instead of hanging every other rank. The other
// ranks wait a little longer than rank 0, so that rank 0, which can name the silent ranks,
// reports first.
Agreement agree_all_ok(bool ok, double timeout_s = 0);
// "rank 3" or "ranks 1, 3, 4" (the first few, then how many more).
std::string rank_list(const std::vector<int>& ranks);

// Every rank of MPI_COMM_WORLD calls it; each learns the strings of the ranks on its own node
// (MPI_COMM_TYPE_SHARED), indexed by local rank. Used before any process group exists, e.g.
// to compare the GPUs the ranks of a node picked.
std::vector<std::string> node_allgather(const std::string& mine);

}  // namespace dp
