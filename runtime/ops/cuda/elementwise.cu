#include "runtime/ops/cuda/elementwise.h"

#include <cstdint>

#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/error.h"
#include "runtime/ops/cuda/launch.cuh"

namespace dp::cuda {

using detail::col_begin;
using detail::col_stride;
using detail::global_thread;
using detail::grid_threads;
using detail::kBlock;
using detail::row_begin;
using detail::row_stride;

namespace {

// Loads as float32: the identity for float, the exact widening for bfloat16.
__device__ __forceinline__ float load_f32(const float* p) {
  return *p;
}
__device__ __forceinline__ float load_f32(const __nv_bfloat16* p) {
  return __bfloat162float(*p);
}

// +0 of an element type (bits all zero, whatever the type's constructors do).
template <typename T>
__device__ __forceinline__ T zero_of();
template <>
__device__ __forceinline__ float zero_of<float>() {
  return 0.0f;
}
template <>
__device__ __forceinline__ __nv_bfloat16 zero_of<__nv_bfloat16>() {
  return __ushort_as_bfloat16(0);
}

__global__ void fill_kernel(size_t n, float value, float* __restrict__ x) {
  for (size_t i = global_thread(); i < n; i += grid_threads()) x[i] = value;
}

__global__ void add_row_bias_kernel(size_t rows, size_t cols, const float* __restrict__ bias,
                                    float* __restrict__ y) {
  for (size_t r = row_begin(); r < rows; r += row_stride())
    for (size_t c = col_begin(); c < cols; c += col_stride()) y[r * cols + c] += bias[c];
}

// One block per 32 columns (grid-stride over column tiles). Thread (tx, ty) sums rows ty,
// ty + 32, ... of column tile_start + tx: each warp reads 32 consecutive floats of one row
// (coalesced). Then thread (tx, 0) adds the 32 partials of its column in order ty = 0..31.
// Parallelism is cols / 32 blocks, ample for the layer widths this is called with; a bias of
// very few columns over a huge batch would want a two-pass split over rows. T is float or
// bfloat16 (widened on load; the sums are float either way, in the same order).
constexpr int kColTile = 32;
constexpr int kColRows = 32;
template <typename T>
__global__ void col_sum_kernel(size_t rows, size_t cols, const T* __restrict__ x,
                               float* __restrict__ out) {
  __shared__ float partial[kColRows][kColTile + 1];  // +1: no bank conflicts on the column read
  const unsigned tx = threadIdx.x, ty = threadIdx.y;
  for (size_t tile = static_cast<size_t>(blockIdx.x) * kColTile; tile < cols;
       tile += static_cast<size_t>(gridDim.x) * kColTile) {
    const size_t c = tile + tx;
    float s = 0.0f;
    if (c < cols)
      for (size_t r = ty; r < rows; r += kColRows) s += load_f32(x + r * cols + c);
    partial[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && c < cols) {
      float total = 0.0f;
      for (int i = 0; i < kColRows; ++i) total += partial[i][tx];
      out[c] += total;
    }
    __syncthreads();  // `partial` is rewritten by the next tile
  }
}

// The ReLUs select and never round: the output is x (or dy) itself, or +0 where x <= 0 (-0
// included; a NaN x is kept, as torch.relu keeps it). No __restrict__ on the pointers that
// may alias.
template <typename T>
__global__ void relu_forward_kernel(size_t n, const T* x, T* y) {
  for (size_t i = global_thread(); i < n; i += grid_threads()) {
    const T v = x[i];
    y[i] = load_f32(&v) <= 0.0f ? zero_of<T>() : v;
  }
}

template <typename T>
__global__ void relu_backward_kernel(size_t n, const T* __restrict__ x, const T* dy, T* dx) {
  for (size_t i = global_thread(); i < n; i += grid_threads())
    dx[i] = load_f32(x + i) <= 0.0f ? zero_of<T>() : dy[i];
}

__global__ void axpy_kernel(size_t n, float alpha, const float* __restrict__ x,
                            float* __restrict__ y) {
  for (size_t i = global_thread(); i < n; i += grid_threads()) y[i] += alpha * x[i];
}

__global__ void scale_kernel(size_t n, float alpha, float* __restrict__ x) {
  for (size_t i = global_thread(); i < n; i += grid_threads()) x[i] *= alpha;
}

constexpr size_t kSumSquaresMaxBlocks = kSumSquaresScratchBytes / sizeof(double);
constexpr int kFinalBlock = 1024;
static_assert(kSumSquaresMaxBlocks <= kFinalBlock, "the final pass sums one partial per thread");

// Pass 1: block b sums elements b*256 + t, stepping by the grid, into partials[b]. The grid
// size is a function of n only (not of the GPU), so the partition, and thus the bits, are too.
__global__ void sum_squares_partial_kernel(size_t n, const float* __restrict__ x,
                                           double* __restrict__ partials) {
  double s = 0.0;
  for (size_t i = global_thread(); i < n; i += grid_threads()) {
    const double v = x[i];
    s += v * v;  // exact: a float squared fits in a double
  }
  s = detail::block_sum(s);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// Pass 2: one block adds the partials in a fixed order.
__global__ void sum_squares_final_kernel(unsigned num_partials, const double* __restrict__ partials,
                                         double* __restrict__ result, bool accumulate) {
  double s = 0.0;
  for (unsigned i = threadIdx.x; i < num_partials; i += blockDim.x) s += partials[i];
  s = detail::block_sum(s);
  if (threadIdx.x == 0) *result = accumulate ? *result + s : s;
}

// Per 16-bit type: round to nearest even, and widen exactly.
__device__ __forceinline__ void store_rn(__nv_bfloat16& y, float x) {
  y = __float2bfloat16_rn(x);
}
__device__ __forceinline__ void store_rn(__half& y, float x) {
  y = __float2half_rn(x);
}
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
__device__ __forceinline__ float to_f32(__half x) {
  return __half2float(x);
}

template <typename H>
__global__ void f32_to_half_kernel(size_t n, const float* __restrict__ x, H* __restrict__ y) {
  for (size_t i = global_thread(); i < n; i += grid_threads()) store_rn(y[i], x[i]);
}

template <typename H>
__global__ void half_to_f32_kernel(size_t n, const H* __restrict__ x, float* __restrict__ y) {
  for (size_t i = global_thread(); i < n; i += grid_threads()) y[i] = to_f32(x[i]);
}

void check_ptrs(const char* what, size_t n, const void* a, const void* b = nullptr,
                bool two = false) {
  DP_CHECK(n == 0 || (a != nullptr && (!two || b != nullptr)),
           "cuda::{}: null device pointer for {} elements", what, n);
}

}  // namespace

void fill(size_t n, float value, float* x, cudaStream_t stream) {
  check_ptrs("fill", n, x);
  if (n == 0) return;
  fill_kernel<<<detail::grid_1d(n), kBlock, 0, stream>>>(n, value, x);
  DP_CUDA_CHECK(cudaGetLastError());
}

void add_row_bias(size_t rows, size_t cols, const float* bias, float* y, cudaStream_t stream) {
  check_ptrs("add_row_bias", rows * cols, bias, y, true);
  if (rows == 0 || cols == 0) return;
  const detail::Launch2d l = detail::launch_2d(rows, cols);
  add_row_bias_kernel<<<l.grid, l.block, 0, stream>>>(rows, cols, bias, y);
  DP_CUDA_CHECK(cudaGetLastError());
}

namespace {

template <typename T>
void launch_col_sum(size_t rows, size_t cols, const T* x, float* out, cudaStream_t stream) {
  check_ptrs("col_sum_accumulate", rows * cols, x, out, true);
  if (rows == 0 || cols == 0) return;  // out += nothing
  const size_t tiles = (cols + kColTile - 1) / kColTile;
  const unsigned grid = static_cast<unsigned>(std::min(tiles, detail::kMaxGrid));
  col_sum_kernel<T><<<grid, dim3(kColTile, kColRows), 0, stream>>>(rows, cols, x, out);
  DP_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void launch_relu_forward(size_t n, const T* x, T* y, cudaStream_t stream) {
  check_ptrs("relu_forward", n, x, y, true);
  if (n == 0) return;
  relu_forward_kernel<T><<<detail::grid_1d(n), kBlock, 0, stream>>>(n, x, y);
  DP_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void launch_relu_backward(size_t n, const T* x, const T* dy, T* dx, cudaStream_t stream) {
  check_ptrs("relu_backward", n, x, dy, true);
  check_ptrs("relu_backward", n, dx);
  if (n == 0) return;
  relu_backward_kernel<T><<<detail::grid_1d(n), kBlock, 0, stream>>>(n, x, dy, dx);
  DP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void col_sum_accumulate(size_t rows, size_t cols, const float* x, float* out, cudaStream_t stream) {
  launch_col_sum(rows, cols, x, out, stream);
}

void col_sum_accumulate(size_t rows, size_t cols, const __nv_bfloat16* x, float* out,
                        cudaStream_t stream) {
  launch_col_sum(rows, cols, x, out, stream);
}

void relu_forward(size_t n, const float* x, float* y, cudaStream_t stream) {
  launch_relu_forward(n, x, y, stream);
}

void relu_forward(size_t n, const __nv_bfloat16* x, __nv_bfloat16* y, cudaStream_t stream) {
  launch_relu_forward(n, x, y, stream);
}

void relu_backward(size_t n, const float* x, const float* dy, float* dx, cudaStream_t stream) {
  launch_relu_backward(n, x, dy, dx, stream);
}

void relu_backward(size_t n, const __nv_bfloat16* x, const __nv_bfloat16* dy, __nv_bfloat16* dx,
                   cudaStream_t stream) {
  launch_relu_backward(n, x, dy, dx, stream);
}

void axpy(size_t n, float alpha, const float* x, float* y, cudaStream_t stream) {
  check_ptrs("axpy", n, x, y, true);
  if (n == 0) return;
  axpy_kernel<<<detail::grid_1d(n), kBlock, 0, stream>>>(n, alpha, x, y);
  DP_CUDA_CHECK(cudaGetLastError());
}

void scale(size_t n, float alpha, float* x, cudaStream_t stream) {
  check_ptrs("scale", n, x);
  if (n == 0) return;
  scale_kernel<<<detail::grid_1d(n), kBlock, 0, stream>>>(n, alpha, x);
  DP_CUDA_CHECK(cudaGetLastError());
}

void sum_squares(size_t n, const float* x, double* result, void* scratch, cudaStream_t stream,
                 bool accumulate) {
  DP_CHECK(result != nullptr && scratch != nullptr,
           "cuda::sum_squares: result and scratch ({} bytes) must be device buffers",
           kSumSquaresScratchBytes);
  DP_CHECK(reinterpret_cast<uintptr_t>(scratch) % alignof(double) == 0,
           "cuda::sum_squares: scratch {} is not 8-byte aligned", scratch);
  check_ptrs("sum_squares", n, x);
  if (n == 0) {
    if (!accumulate) DP_CUDA_CHECK(cudaMemsetAsync(result, 0, sizeof(double), stream));
    return;
  }
  const size_t blocks = std::min((n + kBlock - 1) / kBlock, kSumSquaresMaxBlocks);
  double* partials = static_cast<double*>(scratch);
  sum_squares_partial_kernel<<<static_cast<unsigned>(blocks), kBlock, 0, stream>>>(n, x, partials);
  DP_CUDA_CHECK(cudaGetLastError());
  sum_squares_final_kernel<<<1, kFinalBlock, 0, stream>>>(static_cast<unsigned>(blocks), partials,
                                                          result, accumulate);
  DP_CUDA_CHECK(cudaGetLastError());
}

namespace {

template <typename H>
void launch_narrow(const char* what, size_t n, const float* x, H* y, cudaStream_t stream) {
  check_ptrs(what, n, x, y, true);
  if (n == 0) return;
  f32_to_half_kernel<<<detail::grid_1d(n), kBlock, 0, stream>>>(n, x, y);
  DP_CUDA_CHECK(cudaGetLastError());
}

template <typename H>
void launch_widen(const char* what, size_t n, const H* x, float* y, cudaStream_t stream) {
  check_ptrs(what, n, x, y, true);
  if (n == 0) return;
  half_to_f32_kernel<<<detail::grid_1d(n), kBlock, 0, stream>>>(n, x, y);
  DP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void f32_to_bf16(size_t n, const float* x, __nv_bfloat16* y, cudaStream_t stream) {
  launch_narrow("f32_to_bf16", n, x, y, stream);
}

void bf16_to_f32(size_t n, const __nv_bfloat16* x, float* y, cudaStream_t stream) {
  launch_widen("bf16_to_f32", n, x, y, stream);
}

void f32_to_f16(size_t n, const float* x, __half* y, cudaStream_t stream) {
  launch_narrow("f32_to_f16", n, x, y, stream);
}

void f16_to_f32(size_t n, const __half* x, float* y, cudaStream_t stream) {
  launch_widen("f16_to_f32", n, x, y, stream);
}

}  // namespace dp::cuda
