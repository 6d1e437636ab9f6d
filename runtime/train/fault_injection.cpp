#include "runtime/train/fault_injection.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "runtime/core/error.h"
#include "runtime/core/log.h"

namespace dp {

FaultInjection FaultInjection::from_env() {
  FaultInjection f;
  const char* spec = std::getenv("DPRUN_FAULT_STALL");
  if (spec == nullptr || *spec == '\0') return f;
  int rank = -1;
  unsigned long long step = 0;
  double seconds = 0;
  DP_CHECK(std::sscanf(spec, "rank=%d,step=%llu,seconds=%lf", &rank, &step, &seconds) == 3,
           "DPRUN_FAULT_STALL='{}': expected rank=R,step=S,seconds=T", spec);
  f.rank_ = rank;
  f.step_ = step;
  f.seconds_ = seconds;
  return f;
}

void FaultInjection::maybe_stall(int rank, uint64_t step) const {
  if (rank != rank_ || step != step_) return;
  if (step == 0)
    log::warn("DPRUN_FAULT_STALL: stalling {} s while loading the data (start-up)", seconds_);
  else
    log::warn("DPRUN_FAULT_STALL: stalling {} s before the backward of step {}", seconds_, step);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds_));
}

}  // namespace dp
