#pragma once
// Bandwidth-optimal all-reduce of float32 (reduce-scatter, then all-gather around a ring of
// ranks, as Horovod and gloo do it): each rank sends, receives and adds 2(n-1)/n of the
// buffer, whatever the world size. Used for buffers that are not in shared memory (ranks on
// several nodes, or --no-shm); on one node the shared-memory path (shm_allreduce.h) is
// several times faster still.
//
// Why not simply MPI_Allreduce: every chunk here is summed by exactly one rank in a fixed
// order and then copied to the others, so all ranks end with bit-identical values, run after
// run. MPI does not promise that (a reduction tree may add in a different order on different
// ranks), and replicas that drift apart by one ulp per step are no longer replicas.
#include <mpi.h>

#include "runtime/comm/flight_recorder.h"

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
// `recorder` (may be null) notes each step's wait for the left neighbour's chunk
// (FlightRecorder::set_waiting_for), so that a timeout names the rank that never sent it.
RingResult ring_allreduce_f32(float* data, size_t count, bool average, MPI_Comm comm,
                              std::vector<float>& scratch, FlightRecorder* recorder = nullptr);

}  // namespace dp
