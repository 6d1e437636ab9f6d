#include "runtime/ops/cuda/batchnorm.h"

#include <cuda_bf16.h>

#include "runtime/core/cuda/context.h"
#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/cuda/stream.h"
#include "runtime/core/error.h"
#include "runtime/ops/cuda/float_io.cuh"
#include "runtime/ops/cuda/launch.cuh"

namespace dp::gpu {

namespace {

using namespace cuda::detail;

// Element i of channel c's slice of a [batch, channels, plane] tensor.
__device__ __forceinline__ long long channel_elem(long long i, long long c, long long channels,
                                                  long long plane) {
  return ((i / plane) * channels + c) * plane + i % plane;
}

// One block per channel: two passes (mean, then the squared deviations, which do not cancel
// the way E[x^2] - E[x]^2 does), each a fixed strided assignment and a fixed tree.
template <typename T>
__global__ void batch_stats_kernel(long long batch, long long channels, long long plane,
                                   const T* __restrict__ x, float eps, float momentum,
                                   float* __restrict__ mean, float* __restrict__ invstd,
                                   float* __restrict__ running_mean,
                                   float* __restrict__ running_var,
                                   float* __restrict__ num_batches_tracked) {
  __shared__ float block_mean;
  const long long c = blockIdx.x, n = batch * plane;
  float s = 0.0f;
  for (long long i = threadIdx.x; i < n; i += blockDim.x)
    s += load(x[channel_elem(i, c, channels, plane)]);
  s = block_sum(s);
  if (threadIdx.x == 0) block_mean = s / static_cast<float>(n);
  __syncthreads();
  const float mu = block_mean;
  float ss = 0.0f;
  for (long long i = threadIdx.x; i < n; i += blockDim.x) {
    const float d = load(x[channel_elem(i, c, channels, plane)]) - mu;
    ss += d * d;
  }
  ss = block_sum(ss);
  if (threadIdx.x != 0) return;
  const float var = ss / static_cast<float>(n);
  mean[c] = mu;
  invstd[c] = rsqrtf(var + eps);
  if (running_mean == nullptr) return;
  const float unbias = static_cast<float>(static_cast<double>(n) / static_cast<double>(n - 1));
  running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mu;
  running_var[c] = (1.0f - momentum) * running_var[c] + momentum * var * unbias;
  if (c == 0 && num_batches_tracked != nullptr) *num_batches_tracked += 1.0f;
}

__global__ void running_stats_kernel(long long channels, const float* __restrict__ running_mean,
                                     const float* __restrict__ running_var, float eps,
                                     float* __restrict__ mean, float* __restrict__ invstd) {
  for (size_t c = global_thread(); c < static_cast<size_t>(channels); c += grid_threads()) {
    mean[c] = running_mean[c];
    invstd[c] = rsqrtf(running_var[c] + eps);
  }
}

template <typename T>
__global__ void apply_kernel(long long channels, long long plane, size_t total,
                             const T* __restrict__ x, const float* __restrict__ mean,
                             const float* __restrict__ invstd, const float* __restrict__ weight,
                             const float* __restrict__ bias, T* __restrict__ y) {
  for (size_t i = global_thread(); i < total; i += grid_threads()) {
    const long long c = (static_cast<long long>(i) / plane) % channels;
    const float scale = invstd[c] * weight[c];
    y[i] = store<T>(load(x[i]) * scale + (bias[c] - mean[c] * scale));
  }
}

template <typename T>
__global__ void backward_sums_kernel(long long batch, long long channels, long long plane,
                                     const T* __restrict__ x, const T* __restrict__ dy,
                                     const float* __restrict__ mean,
                                     const float* __restrict__ invstd, float* __restrict__ sum_dy,
                                     float* __restrict__ sum_dy_xhat, float* __restrict__ dweight,
                                     float* __restrict__ dbias) {
  const long long c = blockIdx.x, n = batch * plane;
  const float mu = mean[c];
  float sd = 0.0f, sdx = 0.0f;
  for (long long i = threadIdx.x; i < n; i += blockDim.x) {
    const long long j = channel_elem(i, c, channels, plane);
    const float g = load(dy[j]);
    sd += g;
    sdx += g * (load(x[j]) - mu);
  }
  sd = block_sum(sd);
  sdx = block_sum(sdx);
  if (threadIdx.x != 0) return;
  const float dxhat = sdx * invstd[c];
  sum_dy[c] = sd;
  sum_dy_xhat[c] = dxhat;
  dweight[c] += dxhat;
  dbias[c] += sd;
}

template <typename T>
__global__ void backward_input_kernel(
    long long batch, long long channels, long long plane, size_t total, const T* __restrict__ x,
    const T* __restrict__ dy, const float* __restrict__ mean, const float* __restrict__ invstd,
    const float* __restrict__ weight, const float* __restrict__ sum_dy,
    const float* __restrict__ sum_dy_xhat, bool batch_stats, T* __restrict__ dx) {
  const float inv_n = 1.0f / static_cast<float>(batch * plane);
  for (size_t i = global_thread(); i < total; i += grid_threads()) {
    const long long c = (static_cast<long long>(i) / plane) % channels;
    const float k = weight[c] * invstd[c];
    const float a = batch_stats ? -k * invstd[c] * sum_dy_xhat[c] * inv_n : 0.0f;
    const float e = batch_stats ? -k * sum_dy[c] * inv_n : 0.0f;
    dx[i] = store<T>(k * load(dy[i]) + a * (load(x[i]) - mean[c]) + e);
  }
}

// Enough threads per channel block to stream a channel's slice; a power of two multiple of
// 32, as block_sum requires.
constexpr int kStatsBlock = 512;

}  // namespace

void batchnorm_batch_stats(int device, DType dtype, int64_t batch, int64_t channels, int64_t plane,
                           const void* x, float eps, float momentum, float* mean, float* invstd,
                           float* running_mean, float* running_var, float* num_batches_tracked) {
  if (channels == 0) return;
  DP_CHECK(batch * plane > (running_mean != nullptr ? 1 : 0),
           "batchnorm: {} values per channel are too few for batch statistics", batch * plane);
  DeviceGuard guard(device);
  with_float_type(dtype, "batchnorm", [&](auto tag) {
    using T = decltype(tag);
    batch_stats_kernel<T>
        <<<static_cast<unsigned>(channels), kStatsBlock, 0, compute_stream(device)>>>(
            batch, channels, plane, static_cast<const T*>(x), eps, momentum, mean, invstd,
            running_mean, running_var, num_batches_tracked);
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

void batchnorm_running_stats(int device, int64_t channels, const float* running_mean,
                             const float* running_var, float eps, float* mean, float* invstd) {
  if (channels == 0) return;
  DeviceGuard guard(device);
  running_stats_kernel<<<grid_1d(static_cast<size_t>(channels)), kBlock, 0,
                         compute_stream(device)>>>(channels, running_mean, running_var, eps, mean,
                                                   invstd);
  DP_CUDA_CHECK(cudaGetLastError());
}

void batchnorm_apply(int device, DType dtype, int64_t batch, int64_t channels, int64_t plane,
                     const void* x, const float* mean, const float* invstd, const float* weight,
                     const float* bias, void* y) {
  const size_t total = static_cast<size_t>(batch * channels * plane);
  if (total == 0) return;
  DeviceGuard guard(device);
  with_float_type(dtype, "batchnorm", [&](auto tag) {
    using T = decltype(tag);
    apply_kernel<T><<<grid_1d(total), kBlock, 0, compute_stream(device)>>>(
        channels, plane, total, static_cast<const T*>(x), mean, invstd, weight, bias,
        static_cast<T*>(y));
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

void batchnorm_backward_sums(int device, DType dtype, int64_t batch, int64_t channels,
                             int64_t plane, const void* x, const void* dy, const float* mean,
                             const float* invstd, float* sum_dy, float* sum_dy_xhat, float* dweight,
                             float* dbias) {
  if (channels == 0) return;
  DeviceGuard guard(device);
  with_float_type(dtype, "batchnorm backward", [&](auto tag) {
    using T = decltype(tag);
    backward_sums_kernel<T>
        <<<static_cast<unsigned>(channels), kStatsBlock, 0, compute_stream(device)>>>(
            batch, channels, plane, static_cast<const T*>(x), static_cast<const T*>(dy), mean,
            invstd, sum_dy, sum_dy_xhat, dweight, dbias);
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

void batchnorm_backward_input(int device, DType dtype, int64_t batch, int64_t channels,
                              int64_t plane, const void* x, const void* dy, const float* mean,
                              const float* invstd, const float* weight, const float* sum_dy,
                              const float* sum_dy_xhat, bool batch_stats, void* dx) {
  const size_t total = static_cast<size_t>(batch * channels * plane);
  if (total == 0) return;
  DeviceGuard guard(device);
  with_float_type(dtype, "batchnorm backward", [&](auto tag) {
    using T = decltype(tag);
    backward_input_kernel<T><<<grid_1d(total), kBlock, 0, compute_stream(device)>>>(
        batch, channels, plane, total, static_cast<const T*>(x), static_cast<const T*>(dy), mean,
        invstd, weight, sum_dy, sum_dy_xhat, batch_stats, static_cast<T*>(dx));
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dp::gpu
