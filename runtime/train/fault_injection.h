#pragma once
// Test hook for the paths that only a misbehaving rank exercises (a straggler, a hang):
// DPRUN_FAULT_STALL="rank=R,step=S,seconds=T" makes rank R sleep T seconds before the
// backward of step S (step=0: while loading the data, before the ranks' start-up agreement).
// The other ranks must then report the stalled collective (naming the step and the bucket),
// or the start-up they wait for, after --timeout and abort the job, instead of hanging.
// DPRUN_FAULT_STALL="rank=R,phase=P,seconds=T" stalls rank R just before a phase that waits
// for every rank outside any collective: P is process-group (building it), sample (a text
// sample, as a rank that samples slower than the others), checkpoint (rank 0 writing one, as
// on slow storage) or finalize (freeing it and MPI_Finalize); the others must end within
// --timeout there too (a sample: within --timeout plus their own sampling time).
// DPRUN_FAULT_SIGNAL="rank=R,step=S,signal=USR1" makes rank R send itself that signal (USR1,
// TERM or INT) before the backward of step S: a preemption notice at a known step.
// DPRUN_FAULT_NAN="rank=R,step=S" puts a NaN into rank R's float inputs of step S, so that
// the step's averaged gradient is not finite on every rank (--on-nonfinite).
#include <cstdint>

#include "runtime/core/tensor.h"

namespace dp {

class FaultInjection {
 public:
  static FaultInjection from_env();  // inactive unless DPRUN_FAULT_STALL is set
  void maybe_stall(int rank, uint64_t step) const;
  // `phase`: "process-group", "sample" or "finalize" (see above).
  void maybe_stall_at(int rank, const char* phase) const;
  void maybe_signal(int rank, uint64_t step) const;
  void maybe_poison(int rank, uint64_t step, const Tensor& inputs) const;

 private:
  int rank_ = -1;
  uint64_t step_ = 0;
  double seconds_ = 0;
  int phase_rank_ = -1;
  char phase_[16] = {};
  int signal_rank_ = -1;
  uint64_t signal_step_ = 0;
  int signal_ = 0;
  int nan_rank_ = -1;
  uint64_t nan_step_ = 0;
};

}  // namespace dp
