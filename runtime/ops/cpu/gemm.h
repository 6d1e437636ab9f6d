#pragma once
// Row-major GEMM on the CPU: the one BLAS entry point every layer goes through, so that
// the layout convention (row-major, PyTorch's [out, in] weights) is decided in one place.
namespace dp {

// C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C, all row-major; op(X) is X^T when
// trans_x. lda/ldb/ldc are the row strides of A, B and C as stored (before op).
// beta == 0 overwrites C (its old contents, even NaN, are ignored); beta == 1 accumulates.
void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc);

}  // namespace dp
