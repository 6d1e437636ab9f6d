#include "runtime/ops/cuda/residual.h"

#include <cuda_bf16.h>

#include "runtime/core/cuda/context.h"
#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/cuda/stream.h"
#include "runtime/core/error.h"
#include "runtime/ops/cuda/launch.cuh"
#include "runtime/ops/cuda/transformer_common.cuh"

namespace dp::gpu {

namespace {

using cuda::detail::global_thread;
using cuda::detail::grid_1d;
using cuda::detail::grid_threads;
using cuda::detail::kBlock;

using detail::narrow;
using detail::widen;

// b == nullptr: y += a.
template <typename T>
__global__ void add_kernel(size_t n, const T* a, const T* b, T* y) {
  for (size_t i = global_thread(); i < n; i += grid_threads()) {
    const float rhs = b != nullptr ? widen(b[i]) : widen(y[i]);
    y[i] = narrow<T>(widen(a[i]) + rhs);
  }
}

template <typename T>
void launch_add(int device, size_t n, const void* a, const void* b, void* y) {
  if (n == 0) return;
  DeviceGuard guard(device);
  add_kernel<T><<<grid_1d(n), kBlock, 0, compute_stream(device)>>>(
      n, static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(y));
  DP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void add(int device, DType dtype, size_t n, const void* a, const void* b, void* y) {
  if (dtype == DType::f32) return launch_add<float>(device, n, a, b, y);
  DP_CHECK(dtype == DType::bf16, "gpu add: float32 or bfloat16, got {}", dtype_name(dtype));
  launch_add<__nv_bfloat16>(device, n, a, b, y);
}

}  // namespace dp::gpu
