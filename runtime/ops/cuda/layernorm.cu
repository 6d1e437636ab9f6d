#include "runtime/ops/cuda/layernorm.h"

#include "runtime/core/cuda/context.h"
#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/cuda/stream.h"
#include "runtime/ops/cuda/elementwise.h"
#include "runtime/ops/cuda/launch.cuh"
#include "runtime/ops/cuda/transformer_common.cuh"

namespace dp::gpu {

namespace {

using detail::kWarpRowsPerBlock;
using detail::narrow;
using detail::warp_allsum;
using detail::widen;

unsigned row_blocks(size_t rows) {
  return cuda::detail::grid_1d(rows, kWarpRowsPerBlock);
}

// One warp per row, grid-stride over rows; two passes (mean, then squared deviations) as the
// CPU kernel and PyTorch. A row stays in L1/L2 between the passes.
template <typename T>
__global__ void layernorm_forward_kernel(size_t rows, size_t cols, float eps,
                                         const T* __restrict__ x, const float* __restrict__ w,
                                         const float* __restrict__ b, T* __restrict__ y,
                                         float* __restrict__ mean, float* __restrict__ rstd) {
  const unsigned lane = threadIdx.x % 32;
  const float inv_n = 1.0f / static_cast<float>(cols);
  for (size_t r = static_cast<size_t>(blockIdx.x) * kWarpRowsPerBlock + threadIdx.x / 32; r < rows;
       r += static_cast<size_t>(gridDim.x) * kWarpRowsPerBlock) {
    const T* xr = x + r * cols;
    float s = 0.0f;
    for (size_t c = lane; c < cols; c += 32) s += widen(xr[c]);
    const float m = warp_allsum(s) * inv_n;
    float v = 0.0f;
    for (size_t c = lane; c < cols; c += 32) {
      const float d = widen(xr[c]) - m;
      v += d * d;
    }
    const float rs = 1.0f / sqrtf(warp_allsum(v) * inv_n + eps);
    T* yr = y + r * cols;
    for (size_t c = lane; c < cols; c += 32)
      yr[c] = narrow<T>((widen(xr[c]) - m) * rs * w[c] + b[c]);
    if (lane == 0) {
      mean[r] = m;
      rstd[r] = rs;
    }
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w; scratch = dy * xhat,
// which the host then sums per column (the weight gradient) in a fixed order.
template <typename T>
__global__ void layernorm_backward_kernel(size_t rows, size_t cols, const T* __restrict__ x,
                                          const T* __restrict__ dy, const float* __restrict__ w,
                                          const float* __restrict__ mean,
                                          const float* __restrict__ rstd, T* __restrict__ dx,
                                          float* __restrict__ scratch) {
  const unsigned lane = threadIdx.x % 32;
  const float inv_n = 1.0f / static_cast<float>(cols);
  for (size_t r = static_cast<size_t>(blockIdx.x) * kWarpRowsPerBlock + threadIdx.x / 32; r < rows;
       r += static_cast<size_t>(gridDim.x) * kWarpRowsPerBlock) {
    const T* xr = x + r * cols;
    const T* gr = dy + r * cols;
    const float m = mean[r], rs = rstd[r];
    float g_sum = 0.0f, gx_sum = 0.0f;
    for (size_t c = lane; c < cols; c += 32) {
      const float g = widen(gr[c]) * w[c];
      g_sum += g;
      gx_sum += g * (widen(xr[c]) - m) * rs;
    }
    const float g_mean = warp_allsum(g_sum) * inv_n, gx_mean = warp_allsum(gx_sum) * inv_n;
    T* dxr = dx + r * cols;
    float* sr = scratch + r * cols;
    for (size_t c = lane; c < cols; c += 32) {
      const float g = widen(gr[c]);
      const float xhat = (widen(xr[c]) - m) * rs;
      dxr[c] = narrow<T>(rs * (g * w[c] - g_mean - xhat * gx_mean));
      sr[c] = g * xhat;
    }
  }
}

}  // namespace

void layernorm_forward(int device, DType dtype, size_t rows, size_t cols, float eps, const void* x,
                       const float* weight, const float* bias, void* y, float* mean, float* rstd) {
  if (rows == 0 || cols == 0) return;
  DeviceGuard guard(device);
  detail::dispatch_float(dtype, "gpu layernorm", [&](auto t) {
    using T = decltype(t);
    layernorm_forward_kernel<T>
        <<<row_blocks(rows), 32 * kWarpRowsPerBlock, 0, compute_stream(device)>>>(
            rows, cols, eps, static_cast<const T*>(x), weight, bias, static_cast<T*>(y), mean,
            rstd);
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

void layernorm_backward(int device, DType dtype, size_t rows, size_t cols, const void* x,
                        const void* dy, const float* weight, const float* mean, const float* rstd,
                        void* dx, float* dweight, float* dbias, float* scratch) {
  if (rows == 0 || cols == 0) return;
  DeviceGuard guard(device);
  cudaStream_t stream = compute_stream(device);
  detail::dispatch_float(dtype, "gpu layernorm backward", [&](auto t) {
    using T = decltype(t);
    layernorm_backward_kernel<T><<<row_blocks(rows), 32 * kWarpRowsPerBlock, 0, stream>>>(
        rows, cols, static_cast<const T*>(x), static_cast<const T*>(dy), weight, mean, rstd,
        static_cast<T*>(dx), scratch);
    DP_CUDA_CHECK(cudaGetLastError());
    // The parameter gradients: fixed-order column sums, as the Linear bias gradient.
    cuda::col_sum_accumulate(rows, cols, scratch, dweight, stream);
    cuda::col_sum_accumulate(rows, cols, static_cast<const T*>(dy), dbias, stream);
  });
}

}  // namespace dp::gpu
