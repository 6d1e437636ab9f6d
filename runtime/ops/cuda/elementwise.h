#pragma once
// The element-wise kernels of the training step on the GPU: the CUDA twins of
// runtime/ops/cpu/elementwise.h, with the same semantics (tests/gpu compares each against
// its CPU function). Pointers are device pointers on the current device; every call only
// enqueues work on `stream` and returns (no synchronisation, no allocation), and raises a
// dp::Error when the launch fails. Sizes are size_t: a flat gradient bucket can exceed 2^31
// elements. Pointers must not alias unless a comment says so.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstddef>

namespace dp::cuda {

// x[i] = value.
void fill(size_t n, float value, float* x, cudaStream_t stream);

// y[r, c] += bias[c] for a row-major [rows, cols] y.
void add_row_bias(size_t rows, size_t cols, const float* bias, float* y, cudaStream_t stream);
// out[c] += sum_r x[r, c] for a row-major [rows, cols] x (the bias gradient). A per-column
// tree reduction in a fixed order: deterministic, no atomics.
void col_sum_accumulate(size_t rows, size_t cols, const float* x, float* out, cudaStream_t stream);

// y = x <= 0 ? +0 : x (a NaN is kept, as in torch.relu). y may equal x (in place).
// dx = x <= 0 ? 0 : dy (the gradient at 0 is 0, a NaN x passes dy). dx may equal dy.
void relu_forward(size_t n, const float* x, float* y, cudaStream_t stream);
void relu_backward(size_t n, const float* x, const float* dy, float* dx, cudaStream_t stream);

// y += alpha * x.
void axpy(size_t n, float alpha, const float* x, float* y, cudaStream_t stream);
// x *= alpha.
void scale(size_t n, float alpha, float* x, cudaStream_t stream);

// Device scratch that sum_squares needs: at least this many bytes (one double per block of
// the first pass). Reusable by any number of calls on one stream.
constexpr size_t kSumSquaresScratchBytes = 1024 * sizeof(double);
// *result = sum of x[i]^2 (or *result += it when `accumulate`), accumulated in double like
// the CPU version. `result` is a device scalar: reading it is the caller's (one) sync.
// Two passes, each in a fixed order, so the bits depend only on n and x: every rank of a job
// computes the same norm from the same gradients. `scratch` must not overlap `result`.
void sum_squares(size_t n, const float* x, double* result, void* scratch, cudaStream_t stream,
                 bool accumulate = false);

// Round to nearest even (NaN stays NaN), the conversion PyTorch's .to(torch.bfloat16) does.
void f32_to_bf16(size_t n, const float* x, __nv_bfloat16* y, cudaStream_t stream);
// Exact (bf16 is a prefix of f32).
void bf16_to_f32(size_t n, const __nv_bfloat16* x, float* y, cudaStream_t stream);
// IEEE half: __float2half_rn (nearest even, subnormals, past 65504 infinity), as PyTorch's
// .to(torch.float16); back exactly.
void f32_to_f16(size_t n, const float* x, __half* y, cudaStream_t stream);
void f16_to_f32(size_t n, const __half* x, float* y, cudaStream_t stream);
// The same four by overloading, for code written once for both 16-bit types.
inline void narrow(size_t n, const float* x, __nv_bfloat16* y, cudaStream_t stream) {
  f32_to_bf16(n, x, y, stream);
}
inline void narrow(size_t n, const float* x, __half* y, cudaStream_t stream) {
  f32_to_f16(n, x, y, stream);
}
inline void widen(size_t n, const __nv_bfloat16* x, float* y, cudaStream_t stream) {
  bf16_to_f32(n, x, y, stream);
}
inline void widen(size_t n, const __half* x, float* y, cudaStream_t stream) {
  f16_to_f32(n, x, y, stream);
}

// The bfloat16 twins of relu_forward, relu_backward and col_sum_accumulate (the CPU ones are
// in runtime/ops/cpu/bf16_ops.h). Values are compared and summed in float32; the ReLUs only
// select, so their outputs are bit copies of x or dy, or +0 (-0 gives +0 and a NaN is kept,
// as in float32). y may equal x, dx may equal dy.
void relu_forward(size_t n, const __nv_bfloat16* x, __nv_bfloat16* y, cudaStream_t stream);
void relu_backward(size_t n, const __nv_bfloat16* x, const __nv_bfloat16* dy, __nv_bfloat16* dx,
                   cudaStream_t stream);
// out[c] += sum_r x[r, c], x bfloat16, out (the float32 master gradient) and the sums float32;
// the same fixed-order tree as the float32 col_sum_accumulate.
void col_sum_accumulate(size_t rows, size_t cols, const __nv_bfloat16* x, float* out,
                        cudaStream_t stream);

}  // namespace dp::cuda
