#pragma once
// Test hooks for the communication paths that only a misbehaving rank exercises (the style
// of runtime/train/fault_injection.h: an environment variable names the rank and the point).
//
// DPRUN_FAULT_SHM_STALL="rank=R,seq=N,barrier=B,ms=M": rank R sleeps M ms before arriving
// at barrier B (1 or 2) of shared-memory collective #N: the uneven case of a timeout, one
// rank late at barrier 2 while the others give up, made deterministic. Read when the
// process group's shared-memory path is created.
//
// DPRUN_FAULT_INIT_STALL="rank=R,seconds=T": rank R (as the launcher numbers it) sleeps T
// seconds before it starts MPI_Init (and its deadline): a rank that starts late or never,
// which the others, waiting inside MPI_Init, must catch with their initialisation deadline
// (runtime/comm/init_watchdog.h).
#include <chrono>
#include <cstdint>
#include <string>

namespace dp {

struct ShmStall {
  int rank = -1;
  uint64_t seq = 0;
  int barrier = 0;
  std::chrono::milliseconds delay{0};

  static ShmStall from_env();  // inactive unless DPRUN_FAULT_SHM_STALL is set
  void maybe_stall(int rank, uint64_t seq, int barrier) const;
};

struct InitStall {
  int rank = -1;
  double seconds = 0;

  static InitStall from_env();  // inactive unless DPRUN_FAULT_INIT_STALL is set
  // `rank`: the launcher's (launcher_rank()), which may be "?".
  void maybe_stall(const std::string& rank) const;
};

}  // namespace dp
