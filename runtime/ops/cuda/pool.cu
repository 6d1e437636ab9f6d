#include "runtime/ops/cuda/pool.h"

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

struct Geo {
  long long planes, height, width, kernel, stride, padding, out_h, out_w;
};

Geo geo_of(const Window2d& g) {
  DP_CHECK(g.valid(),
           "maxpool2d: invalid window geometry (kernel {}, stride {}, padding {}, {}x{})", g.kernel,
           g.stride, g.padding, g.height, g.width);
  return {
      g.batch * g.channels, g.height, g.width, g.kernel, g.stride, g.padding, g.out_h(), g.out_w()};
}

// One thread per output; the CPU kernel's scan exactly (runtime/ops/cpu/pool.cpp).
template <typename T>
__global__ void maxpool_forward_kernel(Geo g, size_t total, const T* __restrict__ x,
                                       T* __restrict__ y, int32_t* __restrict__ argmax) {
  for (size_t i = global_thread(); i < total; i += grid_threads()) {
    const long long ow = static_cast<long long>(i) % g.out_w;
    const long long oh = (static_cast<long long>(i) / g.out_w) % g.out_h;
    const long long pl = static_cast<long long>(i) / (g.out_w * g.out_h);
    const T* img = x + pl * g.height * g.width;
    const long long h0 = max(oh * g.stride - g.padding, 0LL);
    const long long h1 = min(oh * g.stride - g.padding + g.kernel, g.height);
    const long long w0 = max(ow * g.stride - g.padding, 0LL);
    const long long w1 = min(ow * g.stride - g.padding + g.kernel, g.width);
    float best = -INFINITY;
    long long at = h0 * g.width + w0;
    for (long long ih = h0; ih < h1; ++ih) {
      for (long long iw = w0; iw < w1; ++iw) {
        const long long j = ih * g.width + iw;
        const float v = load(img[j]);
        if (v > best || isnan(v)) {
          best = v;
          at = j;
        }
      }
    }
    y[i] = img[at];
    argmax[i] = static_cast<int32_t>(at);
  }
}

// One thread per input pixel, summing the gradients of the outputs whose window holds it and
// chose it: deterministic even where windows overlap.
template <typename T>
__global__ void maxpool_backward_kernel(Geo g, size_t total, const T* __restrict__ dy,
                                        const int32_t* __restrict__ argmax, T* __restrict__ dx) {
  const long long out = g.out_h * g.out_w;
  for (size_t i = global_thread(); i < total; i += grid_threads()) {
    const long long iw = static_cast<long long>(i) % g.width;
    const long long ih = (static_cast<long long>(i) / g.width) % g.height;
    const long long pl = static_cast<long long>(i) / (g.width * g.height);
    const int32_t me = static_cast<int32_t>(ih * g.width + iw);
    // Outputs whose window [o * stride - padding, + kernel) contains the pixel.
    const long long oh0 = max(floor_div(ih + g.padding - g.kernel, g.stride) + 1, 0LL);
    const long long oh1 = min((ih + g.padding) / g.stride, g.out_h - 1);
    const long long ow0 = max(floor_div(iw + g.padding - g.kernel, g.stride) + 1, 0LL);
    const long long ow1 = min((iw + g.padding) / g.stride, g.out_w - 1);
    float acc = 0.0f;
    for (long long oh = oh0; oh <= oh1; ++oh) {
      for (long long ow = ow0; ow <= ow1; ++ow) {
        const long long o = pl * out + oh * g.out_w + ow;
        if (argmax[o] == me) acc += load(dy[o]);
      }
    }
    dx[i] = store<T>(acc);
  }
}

}  // namespace

void maxpool2d_forward(int device, DType dtype, const Window2d& g, const void* x, void* y,
                       int32_t* argmax) {
  const Geo geo = geo_of(g);
  const size_t total = static_cast<size_t>(geo.planes * geo.out_h * geo.out_w);
  if (total == 0) return;
  DeviceGuard guard(device);
  with_float_type(dtype, "maxpool2d", [&](auto tag) {
    using T = decltype(tag);
    maxpool_forward_kernel<T><<<grid_1d(total), kBlock, 0, compute_stream(device)>>>(
        geo, total, static_cast<const T*>(x), static_cast<T*>(y), argmax);
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

void maxpool2d_backward(int device, DType dtype, const Window2d& g, const void* dy,
                        const int32_t* argmax, void* dx) {
  const Geo geo = geo_of(g);
  const size_t total = static_cast<size_t>(geo.planes * geo.height * geo.width);
  if (total == 0) return;
  DeviceGuard guard(device);
  with_float_type(dtype, "maxpool2d backward", [&](auto tag) {
    using T = decltype(tag);
    maxpool_backward_kernel<T><<<grid_1d(total), kBlock, 0, compute_stream(device)>>>(
        geo, total, static_cast<const T*>(dy), argmax, static_cast<T*>(dx));
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dp::gpu
