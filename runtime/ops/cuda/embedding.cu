#include "runtime/ops/cuda/embedding.h"

#include <algorithm>

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

// cudaMemsetAsync writes bytes: 0x7f in each gives this "no bad index" value, above any
// position (n is checked against it).
constexpr int32_t kNoBadIndex = 0x7f7f7f7f;

template <typename T>
__global__ void embedding_forward_kernel(size_t n, size_t dim, size_t num,
                                         const float* __restrict__ weight,
                                         const int32_t* __restrict__ idx, T* __restrict__ out,
                                         int32_t* __restrict__ flag) {
  for (size_t e = global_thread(); e < n * dim; e += grid_threads()) {
    const size_t i = e / dim, c = e % dim;
    const int32_t k = idx[i];
    if (k < 0 || static_cast<size_t>(k) >= num) {
      if (c == 0) atomicMin(flag, static_cast<int32_t>(i));
      continue;
    }
    out[e] = narrow<T>(weight[static_cast<size_t>(k) * dim + c]);
  }
}

// Block x owns table rows [v0, v1), block y a tile of 256 columns. It walks all n indices in
// chunks of 256, compacts the positions whose index it owns, in increasing order, and then
// each thread adds those positions' gradients into its column: every table element is summed
// by one thread in index order, so the result does not depend on scheduling (float atomics
// would).
template <typename T>
__global__ void embedding_backward_kernel(size_t n, size_t dim, size_t rows_per_block,
                                          const T* __restrict__ dout,
                                          const int32_t* __restrict__ idx,
                                          float* __restrict__ dweight) {
  __shared__ int32_t hits[kBlock];
  __shared__ int32_t warp_counts[kBlock / 32];
  const size_t v0 = static_cast<size_t>(blockIdx.x) * rows_per_block, v1 = v0 + rows_per_block;
  const size_t col = static_cast<size_t>(blockIdx.y) * kBlock + threadIdx.x;
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (size_t base = 0; base < n; base += kBlock) {
    const size_t i = base + threadIdx.x;
    const bool mine =
        i < n && static_cast<size_t>(idx[i]) >= v0 && static_cast<size_t>(idx[i]) < v1;
    const unsigned ballot = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int32_t offset = 0, count = 0;
    for (unsigned w = 0; w < kBlock / 32; ++w) {
      if (w < warp) offset += warp_counts[w];
      count += warp_counts[w];
    }
    if (mine) hits[offset + __popc(ballot & ((1u << lane) - 1u))] = static_cast<int32_t>(i);
    __syncthreads();
    if (col < dim)
      for (int32_t h = 0; h < count; ++h) {
        const size_t p = static_cast<size_t>(hits[h]);
        dweight[static_cast<size_t>(idx[p]) * dim + col] += widen(dout[p * dim + col]);
      }
    __syncthreads();  // hits and warp_counts are rewritten by the next chunk
  }
}

}  // namespace

int64_t embedding_forward(int device, DType dtype, size_t n, size_t dim, size_t num,
                          const float* weight, const int32_t* idx, void* out, int32_t* flag) {
  if (n == 0 || dim == 0) return -1;
  DP_CHECK(n < static_cast<size_t>(kNoBadIndex),
           "gpu embedding: {} indices exceed the int32 "
           "position range of the bad-index report",
           n);
  DeviceGuard guard(device);
  cudaStream_t stream = compute_stream(device);
  DP_CUDA_CHECK(cudaMemsetAsync(flag, 0x7f, sizeof(int32_t), stream));
  detail::dispatch_float(dtype, "gpu embedding", [&](auto t) {
    using T = decltype(t);
    embedding_forward_kernel<T><<<grid_1d(n * dim), kBlock, 0, stream>>>(
        n, dim, num, weight, idx, static_cast<T*>(out), flag);
  });
  DP_CUDA_CHECK(cudaGetLastError());
  int32_t bad = kNoBadIndex;
  DP_CUDA_CHECK(cudaMemcpyAsync(&bad, flag, sizeof(bad), cudaMemcpyDeviceToHost, stream));
  DP_CUDA_CHECK(cudaStreamSynchronize(stream));
  return bad == kNoBadIndex ? -1 : static_cast<int64_t>(bad);
}

void embedding_backward(int device, DType dtype, size_t n, size_t dim, size_t num, const void* dout,
                        const int32_t* idx, float* dweight) {
  if (n == 0 || dim == 0 || num == 0) return;
  DeviceGuard guard(device);
  // Enough row ranges to fill the GPU, each scanning all n indices (cheap: they stay in L2).
  const size_t ranges = std::min<size_t>(num, 128);
  const size_t rows_per_block = (num + ranges - 1) / ranges;
  const dim3 grid(static_cast<unsigned>((num + rows_per_block - 1) / rows_per_block),
                  static_cast<unsigned>((dim + kBlock - 1) / kBlock));
  detail::dispatch_float(dtype, "gpu embedding backward", [&](auto t) {
    using T = decltype(t);
    embedding_backward_kernel<T><<<grid, kBlock, 0, compute_stream(device)>>>(
        n, dim, rows_per_block, static_cast<const T*>(dout), idx, dweight);
  });
  DP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dp::gpu
