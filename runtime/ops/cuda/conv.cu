#include "runtime/ops/cuda/conv.h"

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

// Window2d's derived sizes, computed on the host (its member functions are host code).
struct Geo {
  long long batch, channels, height, width, kernel, stride, padding, out_h, out_w;
};

Geo geo_of(const Window2d& g) {
  DP_CHECK(g.valid(), "conv2d: invalid window geometry (kernel {}, stride {}, padding {}, {}x{})",
           g.kernel, g.stride, g.padding, g.height, g.width);
  return {g.batch,  g.channels, g.height,  g.width,  g.kernel,
          g.stride, g.padding,  g.out_h(), g.out_w()};
}

// One thread per col element, row-major over [patch, batch * positions]: consecutive threads
// write consecutive columns (coalesced) and read along an input row.
template <typename T>
__global__ void im2col_kernel(Geo g, size_t total, const T* __restrict__ x, T* __restrict__ col) {
  const long long pos = g.out_h * g.out_w, n = g.batch * pos, kk = g.kernel * g.kernel;
  for (size_t i = global_thread(); i < total; i += grid_threads()) {
    const long long r = static_cast<long long>(i) / n, j = static_cast<long long>(i) % n;
    const long long c = r / kk, ki = (r % kk) / g.kernel, kj = r % g.kernel;
    const long long b = j / pos, p = j % pos;
    const long long ih = (p / g.out_w) * g.stride - g.padding + ki;
    const long long iw = (p % g.out_w) * g.stride - g.padding + kj;
    const bool inside = ih >= 0 && ih < g.height && iw >= 0 && iw < g.width;
    col[i] = inside ? x[((b * g.channels + c) * g.height + ih) * g.width + iw] : store<T>(0.0f);
  }
}

// One thread per input pixel, gathering every col entry it was copied to: no atomics, a
// fixed summation order.
template <typename T>
__global__ void col2im_kernel(Geo g, size_t total, const float* __restrict__ dcol,
                              T* __restrict__ dx) {
  const long long pos = g.out_h * g.out_w, n = g.batch * pos;
  for (size_t i = global_thread(); i < total; i += grid_threads()) {
    const long long iw = static_cast<long long>(i) % g.width;
    const long long ih = (static_cast<long long>(i) / g.width) % g.height;
    const long long c = (static_cast<long long>(i) / (g.width * g.height)) % g.channels;
    const long long b = static_cast<long long>(i) / (g.width * g.height * g.channels);
    float acc = 0.0f;
    for (long long ki = 0; ki < g.kernel; ++ki) {
      const long long t = ih + g.padding - ki;  // = oh * stride for the row that read ih
      if (t < 0 || t % g.stride != 0 || t / g.stride >= g.out_h) continue;
      const long long oh = t / g.stride;
      for (long long kj = 0; kj < g.kernel; ++kj) {
        const long long u = iw + g.padding - kj;
        if (u < 0 || u % g.stride != 0 || u / g.stride >= g.out_w) continue;
        const long long row = (c * g.kernel + ki) * g.kernel + kj;
        acc += dcol[row * n + b * pos + oh * g.out_w + u / g.stride];
      }
    }
    dx[i] = store<T>(acc);
  }
}

// y[b, c, p] = t[c, b * positions + p] (+ bias[c]), one thread per y element.
template <typename T>
__global__ void to_nchw_kernel(long long batch, long long channels, long long positions,
                               size_t total, const float* __restrict__ t,
                               const float* __restrict__ bias, T* __restrict__ y) {
  for (size_t i = global_thread(); i < total; i += grid_threads()) {
    const long long p = static_cast<long long>(i) % positions;
    const long long c = (static_cast<long long>(i) / positions) % channels;
    const long long b = static_cast<long long>(i) / (positions * channels);
    float v = t[c * batch * positions + b * positions + p];
    if (bias != nullptr) v += bias[c];
    y[i] = store<T>(v);
  }
}

// t[c, b * positions + p] = dy[b, c, p], one thread per element of t.
template <typename T>
__global__ void to_channel_major_kernel(long long batch, long long channels, long long positions,
                                        size_t total, const T* __restrict__ dy, T* __restrict__ t) {
  for (size_t i = global_thread(); i < total; i += grid_threads()) {
    const long long p = static_cast<long long>(i) % positions;
    const long long b = (static_cast<long long>(i) / positions) % batch;
    const long long c = static_cast<long long>(i) / (positions * batch);
    t[i] = dy[(b * channels + c) * positions + p];
  }
}

// One block per channel; every thread sums a fixed, strided subset, then a fixed tree.
template <typename T>
__global__ void channel_sum_kernel(long long batch, long long channels, long long plane,
                                   const T* __restrict__ x, float* __restrict__ out) {
  const long long c = blockIdx.x;
  float s = 0.0f;
  for (long long i = threadIdx.x; i < batch * plane; i += blockDim.x)
    s += load(x[((i / plane) * channels + c) * plane + i % plane]);
  s = block_sum(s);
  if (threadIdx.x == 0) out[c] += s;
}

}  // namespace

void im2col(int device, DType dtype, const Window2d& g, const void* x, void* col) {
  const Geo geo = geo_of(g);
  const size_t total = static_cast<size_t>(g.patch() * g.batch * g.positions());
  if (total == 0) return;
  DeviceGuard guard(device);
  with_float_type(dtype, "im2col", [&](auto tag) {
    using T = decltype(tag);
    im2col_kernel<T><<<grid_1d(total), kBlock, 0, compute_stream(device)>>>(
        geo, total, static_cast<const T*>(x), static_cast<T*>(col));
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

void col2im(int device, DType dtype, const Window2d& g, const float* dcol, void* dx) {
  const Geo geo = geo_of(g);
  const size_t total = static_cast<size_t>(g.batch * g.channels * g.plane());
  if (total == 0) return;
  DeviceGuard guard(device);
  with_float_type(dtype, "col2im", [&](auto tag) {
    using T = decltype(tag);
    col2im_kernel<T><<<grid_1d(total), kBlock, 0, compute_stream(device)>>>(geo, total, dcol,
                                                                            static_cast<T*>(dx));
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

void channel_major_to_nchw(int device, DType dtype, int64_t batch, int64_t channels,
                           int64_t positions, const float* t, const float* bias, void* y) {
  const size_t total = static_cast<size_t>(batch * channels * positions);
  if (total == 0) return;
  DeviceGuard guard(device);
  with_float_type(dtype, "conv2d output", [&](auto tag) {
    using T = decltype(tag);
    to_nchw_kernel<T><<<grid_1d(total), kBlock, 0, compute_stream(device)>>>(
        batch, channels, positions, total, t, bias, static_cast<T*>(y));
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

void nchw_to_channel_major(int device, DType dtype, int64_t batch, int64_t channels,
                           int64_t positions, const void* dy, void* t) {
  const size_t total = static_cast<size_t>(batch * channels * positions);
  if (total == 0) return;
  DeviceGuard guard(device);
  with_float_type(dtype, "conv2d grad_output", [&](auto tag) {
    using T = decltype(tag);
    to_channel_major_kernel<T><<<grid_1d(total), kBlock, 0, compute_stream(device)>>>(
        batch, channels, positions, total, static_cast<const T*>(dy), static_cast<T*>(t));
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

void channel_sum_accumulate(int device, DType dtype, int64_t batch, int64_t channels, int64_t plane,
                            const void* x, float* out) {
  if (channels == 0 || batch * plane == 0) return;
  DeviceGuard guard(device);
  with_float_type(dtype, "channel_sum_accumulate", [&](auto tag) {
    using T = decltype(tag);
    channel_sum_kernel<T><<<static_cast<unsigned>(channels), kBlock, 0, compute_stream(device)>>>(
        batch, channels, plane, static_cast<const T*>(x), out);
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dp::gpu
