#include "runtime/ops/cpu/gemm.h"

#include <cblas.h>

#include "runtime/core/error.h"
#include "runtime/ops/cpu/gemm_profile.h"

namespace dp {

void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc) {
  DP_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm: negative size m={} n={} k={}", m, n, k);
  if (m == 0 || n == 0) return;
  if (gemm_profile_enabled()) gemm_profile_record(trans_a, trans_b, m, n, k, beta, a, b, c);
  if (k == 0) {
    // BLAS would do this too, but some builds reject lda < 1 for an empty operand first.
    for (int i = 0; i < m; ++i) {
      float* row = c + static_cast<long>(i) * ldc;
      for (int j = 0; j < n; ++j) row[j] = beta == 0.0f ? 0.0f : beta * row[j];
    }
    return;
  }
  // A reversed leading dimension is the bug that produces plausible garbage, not a crash:
  // check it here rather than trust OpenBLAS's xerbla message on stderr.
  DP_CHECK(lda >= (trans_a ? m : k), "gemm: lda={} too small for A ({}x{}, trans={})", lda,
           trans_a ? k : m, trans_a ? m : k, trans_a);
  DP_CHECK(ldb >= (trans_b ? k : n), "gemm: ldb={} too small for B ({}x{}, trans={})", ldb,
           trans_b ? n : k, trans_b ? k : n, trans_b);
  DP_CHECK(ldc >= n, "gemm: ldc={} smaller than n={}", ldc, n);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace dp
