#include "runtime/comm/init_watchdog.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "runtime/core/error.h"

namespace dp {

InitWatchdog::InitWatchdog(std::chrono::milliseconds deadline, std::function<void()> on_expiry) {
  DP_CHECK(deadline.count() > 0, "an initialisation deadline must be positive, got {} ms",
           deadline.count());
  thread_ = std::thread([this, deadline, expiry = std::move(on_expiry)] {
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, deadline, [&] { return disarmed_; })) return;
    // Under the lock: disarm() cannot return until the expiry is done, so an expiry that
    // returns (tests) never races with what follows the guarded call.
    expiry();
  });
}

InitWatchdog::~InitWatchdog() {
  disarm();
  if (thread_.joinable()) thread_.join();
}

void InitWatchdog::disarm() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    disarmed_ = true;
  }
  cv_.notify_all();
}

std::chrono::milliseconds mpi_init_timeout_from_env() {
  const char* s = std::getenv("DPRUN_INIT_TIMEOUT");
  if (s == nullptr || *s == '\0') return std::chrono::seconds(300);
  char* end = nullptr;
  const double seconds = std::strtod(s, &end);
  DP_CHECK(end != s && *end == '\0' && seconds > 0 && seconds < 1e7,
           "DPRUN_INIT_TIMEOUT='{}': expected a positive number of seconds", s);
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

std::string launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    const char* v = std::getenv(name);
    if (v != nullptr && *v != '\0') return v;
  }
  return "?";
}

namespace {

std::string seconds_text(std::chrono::milliseconds ms) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", double(ms.count()) / 1000.0);
  return text;
}

}  // namespace

void expire_phase(const std::string& rank, const std::string& phase,
                  std::chrono::milliseconds deadline, const std::string& knob) {
  // _exit, not exit: the main thread is inside MPI, and exit's handlers (MPI's own among
  // them) could block on it.
  std::fprintf(stderr,
               "dprun: error: [rank %s] %s did not complete within %g s (%s): a rank did not "
               "get there (it stopped, is stuck, or cannot reach the others); ending this rank "
               "instead of hanging the job\n",
               rank.c_str(), phase.c_str(), double(deadline.count()) / 1000.0, knob.c_str());
  std::fflush(stderr);
  _exit(1);
}

void expire_mpi_init(std::chrono::milliseconds deadline) {
  expire_phase(launcher_rank(), "MPI initialisation", deadline, "DPRUN_INIT_TIMEOUT");
}

InitWatchdog phase_deadline(const std::string& rank, const std::string& phase,
                            std::chrono::milliseconds wait, const std::string& knob) {
  const std::chrono::milliseconds deadline = wait + kPhaseOwnWork;
  const std::string why = knob + " " + seconds_text(wait) + " s plus " +
                          seconds_text(kPhaseOwnWork) + " s for the phase's own work";
  return InitWatchdog(deadline, [=] { expire_phase(rank, phase, deadline, why); });
}

}  // namespace dp
