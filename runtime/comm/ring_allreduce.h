#pragma once
// Bandwidth-optimal all-reduce of float32 (reduce-scatter, then all-gather around a ring of
// ranks, as Horovod and gloo do it): each rank sends, receives and adds 2(n-1)/n of the
// buffer, where MPI's default for mid-sized buffers (recursive doubling) moves and adds the
// whole buffer log2(n) times. On a CPU-bound node those additions compete with backward for
// the same cores, so halving them is what lets 2 ranks on 2 cores scale.
//
// Every chunk is summed by exactly one rank in a fixed order and then copied to the others,
// so all ranks end with bit-identical values, run after run.
#include <mpi.h>

#include <cstddef>
#include <string>
#include <vector>

namespace dp {

struct RingResult {
  int mpi_error = MPI_SUCCESS;
  const char* call = "";  // the MPI call that failed
};

// In place over `data[0, count)`. With `average`, the result is divided by the world size
// (on the owned chunk only, before the all-gather: 1/n of the multiplications).
// `scratch` is grown to the largest chunk and reused across calls.
RingResult ring_allreduce_f32(float* data, size_t count, bool average, MPI_Comm comm,
                              std::vector<float>& scratch);

}  // namespace dp
