#include "runtime/train/fault_injection.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>

#include "runtime/core/error.h"
#include "runtime/core/log.h"

namespace dp {

FaultInjection FaultInjection::from_env() {
  FaultInjection f;
  if (const char* sig = std::getenv("DPRUN_FAULT_SIGNAL"); sig != nullptr && *sig != '\0') {
    char name[8] = {};
    unsigned long long step = 0;
    DP_CHECK(std::sscanf(sig, "rank=%d,step=%llu,signal=%7s", &f.signal_rank_, &step, name) == 3,
             "DPRUN_FAULT_SIGNAL='{}': expected rank=R,step=S,signal=USR1|TERM|INT", sig);
    f.signal_step_ = step;
    f.signal_ = std::strcmp(name, "USR1") == 0   ? SIGUSR1
                : std::strcmp(name, "TERM") == 0 ? SIGTERM
                : std::strcmp(name, "INT") == 0  ? SIGINT
                                                 : 0;
    DP_CHECK(f.signal_ != 0, "DPRUN_FAULT_SIGNAL='{}': signal must be USR1, TERM or INT", sig);
  }
  if (const char* nan = std::getenv("DPRUN_FAULT_NAN"); nan != nullptr && *nan != '\0') {
    unsigned long long step = 0;
    DP_CHECK(std::sscanf(nan, "rank=%d,step=%llu", &f.nan_rank_, &step) == 2,
             "DPRUN_FAULT_NAN='{}': expected rank=R,step=S", nan);
    f.nan_step_ = step;
  }
  const char* spec = std::getenv("DPRUN_FAULT_STALL");
  if (spec == nullptr || *spec == '\0') return f;
  int rank = -1;
  unsigned long long step = 0;
  double seconds = 0;
  if (std::sscanf(spec, "rank=%d,phase=%15[a-z-],seconds=%lf", &rank, f.phase_, &seconds) == 3) {
    DP_CHECK(std::strcmp(f.phase_, "process-group") == 0 ||
                 std::strcmp(f.phase_, "finalize") == 0 || std::strcmp(f.phase_, "sample") == 0 ||
                 std::strcmp(f.phase_, "checkpoint") == 0,
             "DPRUN_FAULT_STALL='{}': phase must be process-group, sample, checkpoint or finalize",
             spec);
    f.phase_rank_ = rank;
    f.seconds_ = seconds;
    return f;
  }
  DP_CHECK(std::sscanf(spec, "rank=%d,step=%llu,seconds=%lf", &rank, &step, &seconds) == 3,
           "DPRUN_FAULT_STALL='{}': expected rank=R,step=S,seconds=T or "
           "rank=R,phase=process-group|sample|checkpoint|finalize,seconds=T",
           spec);
  f.rank_ = rank;
  f.step_ = step;
  f.seconds_ = seconds;
  return f;
}

void FaultInjection::maybe_signal(int rank, uint64_t step) const {
  if (rank != signal_rank_ || step != signal_step_) return;
  log::warn("DPRUN_FAULT_SIGNAL: sending signal {} to this rank before the backward of step {}",
            signal_, step);
  std::raise(signal_);
}

void FaultInjection::maybe_poison(int rank, uint64_t step, const Tensor& inputs) const {
  if (rank != nan_rank_ || step != nan_step_) return;
  DP_CHECK(inputs.dtype() == DType::f32 && !inputs.is_cuda(),
           "DPRUN_FAULT_NAN: needs float32 inputs on the CPU, got {}", inputs.str());
  log::warn("DPRUN_FAULT_NAN: a NaN in this rank's inputs of step {}", step);
  // The loader's own buffer, refilled before it is used again: a test hook may write it.
  const_cast<Tensor&>(inputs).f32()[0] = std::numeric_limits<float>::quiet_NaN();
}

void FaultInjection::maybe_stall_at(int rank, const char* phase) const {
  if (rank != phase_rank_ || std::strcmp(phase, phase_) != 0) return;
  log::warn("DPRUN_FAULT_STALL: stalling {} s before the {} phase", seconds_, phase);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds_));
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
