#pragma once
// A deadline for a call that cannot be interrupted and may never return: MPI_Init, which
// waits for every rank of the job to start and connect. A rank that stops inside it (or
// before it) would otherwise hang the whole job, with no collective timeout yet in force.
//
// A thread started before the call waits until disarm() or the deadline; at the deadline
// it runs `on_expiry`, which for MPI_Init prints the reason and ends the process
// (expire_mpi_init): the launcher (mpirun, srun) then ends the others.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace dp {

class InitWatchdog {
 public:
  InitWatchdog(std::chrono::milliseconds deadline, std::function<void()> on_expiry);
  ~InitWatchdog();  // disarms and joins
  InitWatchdog(const InitWatchdog&) = delete;
  InitWatchdog& operator=(const InitWatchdog&) = delete;

  // The call returned in time: on_expiry never runs after this returns.
  void disarm();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool disarmed_ = false;
  std::thread thread_;
};

// DPRUN_INIT_TIMEOUT (seconds, positive), else 300 s: how long MPI initialisation may take.
// Read from the environment because it is needed before the options (parsed after MPI
// starts) exist.
std::chrono::milliseconds mpi_init_timeout_from_env();

// This process's rank as the launcher announced it in the environment (Open MPI, PMIx,
// MPICH/PMI, Slurm), or "?": before MPI_Init returns, MPI cannot say.
std::string launcher_rank();

// What the MPI_Init watchdog does at its deadline: "dprun: error: [rank R] MPI
// initialisation did not complete within N s (...)" on stderr, then _exit(1).
[[noreturn]] void expire_mpi_init(std::chrono::milliseconds deadline);

}  // namespace dp
