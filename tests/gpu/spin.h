#pragma once
#include <cuda_runtime_api.h>

namespace dp::test {

// Launches one thread that spins on the GPU's global timer for `ms` milliseconds on
// `stream`: a way to hold a stream busy for a known time, so that ordering (work that must
// wait for it) and timing (events around it) can be checked. Throws on a launch error.
void launch_spin(cudaStream_t stream, double ms);

}  // namespace dp::test
