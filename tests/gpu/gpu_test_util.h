#pragma once
// Shared by the GPU tests: a fixture that skips without a GPU, device buffers with guard
// zones, random inputs and tolerant comparisons. Every kernel is checked against the CPU
// function it replaces (runtime/ops/cpu, runtime/nn), never against a re-implementation.
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/device.h"
#include "runtime/core/error.h"
#include "runtime/core/rng.h"
#include "tests/gpu/spin.h"
#include "tests/support/gemm_case.h"

// Every test that touches a GPU and does not use the CudaTest fixture starts with this.
// Without a GPU (no driver, or CUDA_VISIBLE_DEVICES empty) it skips with a visible reason.
#define DP_REQUIRE_GPU()                                                                \
  do {                                                                                  \
    if (::dp::cuda_device_count() == 0) {                                               \
      GTEST_SKIP() << "no GPU: cudaGetDeviceCount reports none visible (no driver, or " \
                      "CUDA_VISIBLE_DEVICES is empty); this test runs only on a GPU";   \
    }                                                                                   \
  } while (0)

namespace dp::gpu_test {

// The GPU test binary has gtest's main, not an MPI one: tests that need MPI start it once
// (thread-multiple, as dprun does) and finalise it at exit.
inline void ensure_mpi() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
  std::atexit([] {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  });
}

// The GPU this MPI rank tests on (MPI started if needed): several ranks may share cuda:0,
// as the host-staged MPI backend allows.
inline int mpi_rank_device() {
  ensure_mpi();
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank % dp::cuda_device_count();
}

// Each test runs on cuda:0 with a fresh non-blocking stream: nothing the test checks can
// have been ordered by the legacy default stream, so a kernel launched on the wrong stream
// shows up as a race rather than hiding behind implicit synchronisation.
class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (dp::cuda_device_count() == 0)
      GTEST_SKIP() << "no GPU: cuda_device_count() == 0 (no driver, or CUDA_VISIBLE_DEVICES "
                      "empty); these tests run where a GPU is";
    DP_CUDA_CHECK(cudaSetDevice(0));
    DP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  }
  void TearDown() override {
    if (stream == nullptr) return;
    // Surfaces an asynchronous fault (illegal address, ...) in the test that caused it.
    EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    cudaStreamDestroy(stream);
    stream = nullptr;
  }
  void sync() { DP_CUDA_CHECK(cudaStreamSynchronize(stream)); }

  cudaStream_t stream = nullptr;
};

// A device array of n elements of T, with `front` spare elements before it (to hand a kernel
// a pointer that is only element-aligned) and a guard zone after it. The whole allocation
// starts as the byte 0xA5; guards_intact() tells whether anything outside [0, n) was written.
template <typename T>
class DeviceBuffer {
 public:
  static constexpr size_t kGuard = 64;
  static constexpr unsigned char kPattern = 0xA5;

  DeviceBuffer(size_t n, cudaStream_t stream, size_t front = 0)
      : n_(n), front_(front), stream_(stream) {
    DP_CUDA_CHECK(cudaMalloc(&base_, total() * sizeof(T)));
    DP_CUDA_CHECK(cudaMemsetAsync(base_, kPattern, total() * sizeof(T), stream_));
    DP_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  explicit DeviceBuffer(const std::vector<T>& host, cudaStream_t stream, size_t front = 0)
      : DeviceBuffer(host.size(), stream, front) {
    upload(host);
  }
  ~DeviceBuffer() { cudaFree(base_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() { return base_ + front_; }
  const T* get() const { return base_ + front_; }
  size_t size() const { return n_; }

  void upload(const std::vector<T>& host) {
    DP_CHECK(host.size() == n_, "upload: {} elements into a buffer of {}", host.size(), n_);
    if (n_ == 0) return;
    DP_CUDA_CHECK(
        cudaMemcpyAsync(get(), host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice, stream_));
    DP_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    if (n_ == 0) return host;
    DP_CUDA_CHECK(
        cudaMemcpyAsync(host.data(), get(), n_ * sizeof(T), cudaMemcpyDeviceToHost, stream_));
    DP_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return host;
  }
  bool guards_intact() const {
    std::vector<unsigned char> all(total() * sizeof(T));
    DP_CUDA_CHECK(cudaMemcpyAsync(all.data(), base_, all.size(), cudaMemcpyDeviceToHost, stream_));
    DP_CUDA_CHECK(cudaStreamSynchronize(stream_));
    const size_t lo = front_ * sizeof(T), hi = (front_ + n_) * sizeof(T);
    for (size_t i = 0; i < all.size(); ++i)
      if ((i < lo || i >= hi) && all[i] != kPattern) return false;
    return true;
  }

 private:
  size_t total() const { return front_ + n_ + kGuard; }
  size_t n_, front_;
  cudaStream_t stream_;
  T* base_ = nullptr;
};

using test::GemmGeometry;  // tests/support/gemm_case.h

// Uniform in [lo, hi), never exactly 0 (a zero would hide a missing term).
inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  Philox rng(seed, 11);
  std::vector<float> v(n);
  for (float& x : v) {
    x = lo + (hi - lo) * rng.uniform();
    if (x == 0.0f) x = 0.5f * hi;
  }
  return v;
}

// Small non-zero integers in [-r, r] (times `unit`): sums and products of these are exact in
// float32, so a kernel and its CPU reference must agree bit for bit whatever the order of
// summation. This is what pins down index and layout mistakes without any tolerance.
inline std::vector<float> random_small_ints(size_t n, uint64_t seed, int r = 4, float unit = 1.0f) {
  Philox rng(seed, 13);
  std::vector<float> v(n);
  for (float& x : v) {
    int k = static_cast<int>(rng.below(static_cast<uint64_t>(2 * r))) - r;  // [-r, r)
    if (k >= 0) ++k;                                                        // skip 0: [-r, r]
    x = static_cast<float>(k) * unit;
  }
  return v;
}

// Round to bfloat16 and back (NVIDIA's host conversion): values that bf16 holds exactly,
// so that the CPU float reference sees the same inputs as a bf16 kernel.
inline std::vector<float> round_to_bf16(std::vector<float> v) {
  for (float& x : v) x = __bfloat162float(__float2bfloat16_rn(x));
  return v;
}
inline std::vector<__nv_bfloat16> to_bf16(const std::vector<float>& v) {
  std::vector<__nv_bfloat16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __float2bfloat16_rn(v[i]);
  return out;
}
inline std::vector<float> from_bf16(const std::vector<__nv_bfloat16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __bfloat162float(v[i]);
  return out;
}

// |got - want| <= rtol * max(|want|, floor) everywhere; both NaN counts as equal, one NaN as
// a mismatch. `floor` sets the absolute tolerance for values near 0, where a relative test
// would demand more than float rounding can give.
template <typename G, typename W>
::testing::AssertionResult all_close(const std::vector<G>& got, const std::vector<W>& want,
                                     double rtol, double floor) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != expected " << want.size();
  size_t bad = 0, first = 0;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]), w = static_cast<double>(want[i]);
    if (std::isnan(g) && std::isnan(w)) continue;
    const double err = std::fabs(g - w), tol = rtol * std::max(std::fabs(w), floor);
    if (!(err <= tol)) {  // NaN err fails too
      if (bad++ == 0) first = i;
      worst = std::max(worst, std::isnan(err) ? INFINITY : err / std::max(std::fabs(w), floor));
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << got.size() << " elements differ; first at " << first << ": got "
         << static_cast<double>(got[first]) << ", expected " << static_cast<double>(want[first])
         << "; worst relative error " << worst << " (rtol " << rtol << ", floor " << floor << ")";
}

// Bit-for-bit equality (for the exact-arithmetic tests).
inline ::testing::AssertionResult all_equal(const std::vector<float>& got,
                                            const std::vector<float>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != expected " << want.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0)
      return ::testing::AssertionFailure()
             << "first difference at " << i << ": got " << got[i] << ", expected " << want[i];
  return ::testing::AssertionSuccess();
}

// The sizes every 1-D kernel is run at: 1, odd, just above a block, a warp and a grid of
// blocks, and large enough that the capped grid must stride.
inline const std::vector<size_t>& odd_sizes() {
  static const std::vector<size_t> s = {1, 7, 33, 255, 257, 1000, 4097, (size_t{1} << 21) + 3};
  return s;
}

// [rows, cols] shapes for the row/column kernels: single row or column, fewer columns than a
// warp, wide rows, more rows than gridDim.y can hold blocks of (65535 * 8 rows).
struct Shape2d {
  size_t rows, cols;
};
inline const std::vector<Shape2d>& odd_shapes() {
  static const std::vector<Shape2d> s = {{1, 1},      {1, 4097},  {4097, 1}, {7, 33},
                                         {33, 7},     {1000, 10}, {64, 256}, {3, 70001},
                                         {4097, 129}, {600001, 3}};
  return s;
}

}  // namespace dp::gpu_test
