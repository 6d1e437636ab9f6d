#pragma once
// The desync check of collectives that move their data through MPI (or NCCL), where no
// shared control block exists: every rank passes its collective's fingerprint
// (runtime/comm/fingerprint.h) before the data moves.
//
// One MPI_Allreduce(MAX) of {hash, ~hash} tells every rank at once whether all hashes are
// equal (the second maximum is the complement of the minimum: max == min), without a second
// round. Only when they differ do the ranks exchange their descriptions (fixed-size records,
// one MPI_Allgather), so that the CollectiveError names both sides: rank 0 and the first rank
// that disagrees with it, the same message on every rank.
//
// Why a separate check rather than trusting the data call: ranks in different collectives
// make MPI pair a ring's messages with an all-reduce's, or all-reduce arrays of different
// lengths: a hang at best, silently mixed data at worst.
#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "runtime/comm/fingerprint.h"

namespace dp {

// Collective over `comm`. `timeout` > 0 polls a non-blocking all-reduce against that
// deadline (a thread that must never block for good: NCCL's issuing thread) and throws
// CollectiveTimeout after it; 0 blocks, as the data call after it would.
void check_fingerprints(MPI_Comm comm, const Fingerprint& fp,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

// After a check found different hashes (every rank knows): one MPI_Allgather of fixed-size
// records of the ranks' descriptions, then the CollectiveError naming rank 0 and the first
// rank that disagrees with it, the same on every rank. Never returns normally.
// `path_hash` and `how` (what the check compared beyond the fingerprint: the dprun check's
// payload, runtime/comm/fused_check.h) name ranks that agree on the collective but not on how
// its data moves.
[[noreturn]] void name_mismatch(MPI_Comm comm, const Fingerprint& fp,
                                std::chrono::milliseconds timeout = std::chrono::milliseconds(0),
                                uint64_t path_hash = 0, const std::string& how = {});

}  // namespace dp
