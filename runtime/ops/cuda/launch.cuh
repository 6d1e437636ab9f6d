#pragma once
// Launch geometry and block reductions shared by the kernels in runtime/ops/cuda/. Private
// to the .cu files of this directory (the public headers are plain C++).
//
// Conventions every kernel here follows:
//  - indices are size_t and loops are grid-stride, so a grid capped below the problem size
//    (or a size above 2^31) still covers every element exactly once;
//  - no launch for an empty problem (a zero-block grid is a launch error);
//  - every reduction has a fixed assignment of elements to threads and a fixed combining
//    order, so the same inputs give the same bits on every run and every GPU model: ranks of
//    a data-parallel job compare norms and losses, and a reduction whose result depends on
//    scheduling would make them disagree.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

namespace dp::cuda::detail {

constexpr int kBlock = 256;
// Enough resident blocks for any current GPU (H100: 132 SMs x up to 8 blocks of 256 threads);
// beyond this the grid-stride loops take over, which costs nothing for memory-bound work.
constexpr size_t kMaxGrid = 8192;
// gridDim.y and gridDim.z are limited to 65535 by the hardware.
constexpr size_t kMaxGridY = 65535;

inline unsigned grid_1d(size_t n, int block = kBlock) {
  const size_t blocks = (n + static_cast<size_t>(block) - 1) / static_cast<size_t>(block);
  return static_cast<unsigned>(std::clamp<size_t>(blocks, 1, kMaxGrid));
}

__device__ __forceinline__ size_t global_thread() {
  return static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t grid_threads() {
  return static_cast<size_t>(gridDim.x) * blockDim.x;
}

// Geometry for a row-major [rows, cols] walk: threadIdx.x runs along a row (coalesced), and
// a block holds several rows when rows are short, so that a 10-column matrix does not leave
// 246 of 256 threads idle. Kernels loop
//   for (r = blockIdx.y * blockDim.y + threadIdx.y; r < rows; r += gridDim.y * blockDim.y)
//     for (c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x)
struct Launch2d {
  dim3 grid;
  dim3 block;
};

inline Launch2d launch_2d(size_t rows, size_t cols) {
  unsigned bx = 32;  // at least a warp along the row
  while (bx < static_cast<unsigned>(kBlock) && bx < cols) bx *= 2;
  const unsigned by = static_cast<unsigned>(kBlock) / bx;
  const size_t gx = std::clamp<size_t>((cols + bx - 1) / bx, 1, kMaxGrid);
  const size_t gy = std::clamp<size_t>((rows + by - 1) / by, 1, kMaxGridY);
  return {dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), dim3(bx, by)};
}

__device__ __forceinline__ size_t row_begin() {
  return static_cast<size_t>(blockIdx.y) * blockDim.y + threadIdx.y;
}
__device__ __forceinline__ size_t row_stride() {
  return static_cast<size_t>(gridDim.y) * blockDim.y;
}
__device__ __forceinline__ size_t col_begin() {
  return static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t col_stride() {
  return static_cast<size_t>(gridDim.x) * blockDim.x;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  // A fixed butterfly: lane i always combines with the same partners in the same order.
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the whole (1-D) block; the result is valid in thread 0 only. Every thread of the
// block must call it (it synchronises). blockDim.x must be a multiple of 32 and <= 1024.
template <typename T>
__device__ T block_sum(T v) {
  __shared__ T warp_partials[32];
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  if (lane == 0) warp_partials[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const unsigned warps = blockDim.x / 32;
    v = lane < warps ? warp_partials[lane] : T(0);
    v = warp_sum(v);
  }
  // The shared array may be reused by a following call in the same kernel.
  __syncthreads();
  return v;
}

}  // namespace dp::cuda::detail
