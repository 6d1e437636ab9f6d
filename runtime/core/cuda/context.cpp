#include "runtime/core/cuda/context.h"

#include <array>
#include <mutex>

#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/cuda/stream.h"
#include "runtime/core/error.h"

namespace dp {

namespace {
constexpr int kMaxDevices = 64;
std::mutex g_mu;
std::array<cudaStream_t, kMaxDevices> g_streams{};
}  // namespace

cudaStream_t compute_stream(int device) {
  DP_CHECK(device >= 0 && device < kMaxDevices, "compute_stream: device {} out of range", device);
  std::lock_guard<std::mutex> lock(g_mu);
  cudaStream_t& s = g_streams[static_cast<size_t>(device)];
  if (s == nullptr) {
    // Never destroyed: destroying streams at exit races with the driver's own teardown.
    DeviceGuard guard(device);
    DP_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  }
  return s;
}

}  // namespace dp
