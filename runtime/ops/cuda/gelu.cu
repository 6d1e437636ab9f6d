#include "runtime/ops/cuda/gelu.h"

#include "runtime/core/cuda/context.h"
#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/cuda/stream.h"
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

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

// 0.5 (1 + tanh(u)) = sigmoid(2u), as the CPU kernel computes it.
__device__ __forceinline__ float gelu_sigmoid(float x) {
  const float u = kSqrt2OverPi * (x + kCubic * x * x * x);
  return 1.0f / (1.0f + expf(-2.0f * u));
}

template <typename T>
__global__ void gelu_forward_kernel(size_t n, const T* __restrict__ x, T* __restrict__ y) {
  for (size_t i = global_thread(); i < n; i += grid_threads()) {
    const float v = widen(x[i]);
    y[i] = narrow<T>(v * gelu_sigmoid(v));
  }
}

// dx may equal dy: each element is read, then written, by one thread.
template <typename T>
__global__ void gelu_backward_kernel(size_t n, const T* __restrict__ x, const T* dy, T* dx) {
  for (size_t i = global_thread(); i < n; i += grid_threads()) {
    const float v = widen(x[i]);
    const float s = gelu_sigmoid(v);
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kCubic * v * v);
    dx[i] = narrow<T>(widen(dy[i]) * (s + 2.0f * v * s * (1.0f - s) * du));
  }
}

}  // namespace

void gelu_forward(int device, DType dtype, size_t n, const void* x, void* y) {
  if (n == 0) return;
  DeviceGuard guard(device);
  detail::dispatch_float(dtype, "gpu gelu", [&](auto t) {
    using T = decltype(t);
    gelu_forward_kernel<T><<<grid_1d(n), kBlock, 0, compute_stream(device)>>>(
        n, static_cast<const T*>(x), static_cast<T*>(y));
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

void gelu_backward(int device, DType dtype, size_t n, const void* x, const void* dy, void* dx) {
  if (n == 0) return;
  DeviceGuard guard(device);
  detail::dispatch_float(dtype, "gpu gelu backward", [&](auto t) {
    using T = decltype(t);
    gelu_backward_kernel<T><<<grid_1d(n), kBlock, 0, compute_stream(device)>>>(
        n, static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dx));
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dp::gpu
