#pragma once
// A deadline for a call that cannot be interrupted and may never return because it waits for
// every rank: MPI_Init (every rank of the job must start and connect), building and freeing
// the process group (MPI_Comm_dup, shared-memory windows), MPI_Finalize. A rank that stops
// inside one (or before it) would otherwise hang the whole job, with no collective timeout
// in force.
//
// A thread started before the call waits until disarm() or the deadline; at the deadline
// it runs `on_expiry`, which prints the reason and ends the process (expire_phase): the
// launcher (mpirun, srun) then ends the others.
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

// What a watchdog does at its deadline: "dprun: error: [rank R] <phase> did not complete
// within N s (<knob>): ..." on stderr, then _exit(1). `knob` is the setting that sets N.
[[noreturn]] void expire_phase(const std::string& rank, const std::string& phase,
                               std::chrono::milliseconds deadline, const std::string& knob);

// expire_phase for MPI_Init: the rank from the launcher, the deadline DPRUN_INIT_TIMEOUT's.
[[noreturn]] void expire_mpi_init(std::chrono::milliseconds deadline);

// What a phase that waits for every rank may take beyond the wait itself: its own work
// (MPI_Finalize alone takes 50-100 ms here, more on a loaded machine; a big model's
// shared-memory window is mapped and zeroed) is no peer that never came, and a tight --timeout
// (a one-rank job with 0.05 s, CI's tests with 0.5 s) must not fail a healthy job there.
constexpr std::chrono::milliseconds kPhaseOwnWork{5000};

// A watchdog on one phase that waits for every rank: after `wait` (the setting `knob`) plus
// kPhaseOwnWork it ends this rank with expire_phase's message. `auto guard =
// phase_deadline(...)` guards the rest of the scope.
InitWatchdog phase_deadline(const std::string& rank, const std::string& phase,
                            std::chrono::milliseconds wait, const std::string& knob);

}  // namespace dp
