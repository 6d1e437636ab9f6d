#pragma once
// The CPU kernels of bf16 mixed precision (--precision bf16): the reference the GPU kernels
// of the same names (runtime/ops/device_ops.h) are tested against, and a working CPU path in
// their own right. bfloat16 is storage only: every kernel widens to float32 (exactly),
// computes in float32 and rounds once, to nearest even, when it stores bfloat16.
// Debian's OpenBLAS has no sbgemm, so gemm_bf16 widens its inputs into reused per-thread
// scratch and calls sgemm: the same products and float32 accumulation as a bf16 tensor-core
// GEMM, at float32 speed.
#include <cstddef>

#include "runtime/core/dtype.h"

namespace dp {

void f32_to_bf16(size_t n, const float* x, bf16* y);
void bf16_to_f32(size_t n, const bf16* x, float* y);

// C[m, n] = alpha * op(A) op(B) + beta * C (+ bias[j] per column when bias is not null),
// row-major, the arguments of the CPU gemm (runtime/ops/cpu/gemm.h). A and B are bfloat16;
// C (and the bias) are float32 or bfloat16 as `c_dtype` says. The sum is formed in float32
// and rounded once into a bfloat16 C. beta == 0 ignores C's old contents.
void gemm_bf16(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const bf16* a, int lda,
               const bf16* b, int ldb, float beta, void* c, int ldc, DType c_dtype,
               const void* bias);

// y = x <= 0 ? +0 : x (a NaN is kept); y may equal x.
void relu_forward_bf16(size_t n, const bf16* x, bf16* y);
// dx = x <= 0 ? 0 : dy (a NaN x passes dy); dx may equal dy.
void relu_backward_bf16(size_t n, const bf16* x, const bf16* dy, bf16* dx);
// out[c] += sum_r x[r, c], summed in float32 into the float32 (master) gradient.
void col_sum_accumulate_bf16(size_t rows, size_t cols, const bf16* x, float* out);

}  // namespace dp
