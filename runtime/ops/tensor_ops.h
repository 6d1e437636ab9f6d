#pragma once
// Tensor-level operations: each takes Tensors, checks that they fit together, and picks the
// kernel for their device (CPU, CUDA) and dtype (float32, bfloat16) in one place, so that a
// layer's forward and backward are written once, over these, whatever it runs on.
//
// Matrices: a tensor of two or more dimensions is seen as [rows, cols] with cols its last
// dimension (contiguous, row-major), so [B, T, C] activations go through a GEMM as
// [B*T, C] with no reshape. On a GPU every call only enqueues work on the device's compute
// stream.
#include "runtime/core/tensor.h"

namespace dp::ops {

// The [rows, cols] view of a tensor described above.
int64_t rows_of(const Tensor& t);
int64_t cols_of(const Tensor& t);

// c = alpha * op(a) op(b) + beta * c (+ bias[j] added to every row of c when bias is not
// null), with op(x) = x^T when trans_x. a and b are both float32 or both bfloat16 (float32
// accumulation); c is float32, or bfloat16 with bfloat16 operands; the bias has c's dtype.
// beta == 0 ignores c's old contents; beta == 1 accumulates (the gradients).
void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
            float alpha = 1.0f, float beta = 0.0f, const Tensor* bias = nullptr);

// out[j] += sum_r x[r, j]: a bias gradient, x float32 or bfloat16, out float32 [cols].
void col_sum_accumulate(const Tensor& x, Tensor& out);

// y = x <= 0 ? 0 : x and its gradient dx = x <= 0 ? 0 : dy (PyTorch's relu and
// threshold_backward: 0 at 0, a NaN passes), in the dtype of x (float32 or bfloat16).
void relu_forward(const Tensor& x, Tensor& y);
void relu_backward(const Tensor& x, const Tensor& dy, Tensor& dx);

// y = x (+)= ... element-wise helpers for residual connections: y = a + b, and
// y += x. Same shape, dtype (float32 or bfloat16) and device.
void add(const Tensor& a, const Tensor& b, Tensor& y);
void add_(Tensor& y, const Tensor& x);

}  // namespace dp::ops
