#pragma once
// Test hooks for the communication paths that only a misbehaving rank exercises (the style
// of runtime/train/fault_injection.h: an environment variable names the rank and the point).
//
// DPRUN_FAULT_SHM_STALL="rank=R,seq=N,barrier=B,ms=M": rank R sleeps M ms before arriving
// at barrier B (1 or 2) of shared-memory collective #N: the uneven case of a timeout, one
// rank late at barrier 2 while the others give up, made deterministic. Read when the
// process group's shared-memory path is created.
#include <chrono>
#include <cstdint>

namespace dp {

struct ShmStall {
  int rank = -1;
  uint64_t seq = 0;
  int barrier = 0;
  std::chrono::milliseconds delay{0};

  static ShmStall from_env();  // inactive unless DPRUN_FAULT_SHM_STALL is set
  void maybe_stall(int rank, uint64_t seq, int barrier) const;
};

}  // namespace dp
