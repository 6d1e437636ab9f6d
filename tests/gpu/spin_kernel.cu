// The spin kernel of gpu_test_util.h. It reads %globaltimer (nanoseconds, sm_70+) rather
// than counting clock cycles, so its duration does not depend on the SM clock, which
// boosts and throttles.
#include <cstdint>

#include "runtime/core/cuda/cuda_check.h"
#include "tests/gpu/spin.h"

namespace {

__device__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void spin_kernel(uint64_t ns) {
  const uint64_t start = global_ns();
  while (global_ns() - start < ns) __nanosleep(1000);
}

}  // namespace

namespace dp::test {

void launch_spin(cudaStream_t stream, double ms) {
  spin_kernel<<<1, 1, 0, stream>>>(static_cast<uint64_t>(ms * 1e6));
  DP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dp::test
