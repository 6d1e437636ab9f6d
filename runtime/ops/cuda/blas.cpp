#include "runtime/ops/cuda/blas.h"

#include <array>
#include <mutex>

#include "runtime/core/error.h"

namespace dp::cuda {

namespace {
constexpr int kMaxDevices = 64;  // as compute_stream()
std::mutex g_mu;
std::array<CublasLt*, kMaxDevices> g_blas{};
}  // namespace

CublasLt& blas(int device) {
  DP_CHECK(device >= 0 && device < kMaxDevices, "blas: device {} out of range", device);
  std::lock_guard<std::mutex> lock(g_mu);
  CublasLt*& b = g_blas[static_cast<size_t>(device)];
  // Deliberately leaked (see blas.h).
  if (b == nullptr) b = new CublasLt(device);
  return *b;
}

}  // namespace dp::cuda
