#include "runtime/ops/cpu/bf16_ops.h"

#include <algorithm>
#include <vector>

#include "runtime/core/bf16.h"
#include "runtime/core/error.h"
#include "runtime/core/simd_clones.h"
#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/cpu/gemm.h"

namespace dp {

namespace {

// Widens a stored rows x cols matrix (row stride ld) into dense float32 scratch.
const float* widen(const bf16* x, size_t rows, size_t cols, size_t ld, std::vector<float>& out) {
  out.resize(rows * cols);
  for (size_t r = 0; r < rows; ++r) bf16_to_f32(cols, x + r * ld, out.data() + r * cols);
  return out.data();
}

}  // namespace

void f32_to_bf16(size_t n, const float* x, bf16* y) {
  for (size_t i = 0; i < n; ++i) y[i] = float_to_bf16(x[i]);
}

void bf16_to_f32(size_t n, const bf16* x, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = bf16_to_float(x[i]);
}

void gemm_bf16(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const bf16* a, int lda,
               const bf16* b, int ldb, float beta, void* c, int ldc, DType c_dtype,
               const void* bias) {
  DP_CHECK(c_dtype == DType::f32 || c_dtype == DType::bf16,
           "gemm_bf16: C must be float32 or bfloat16, got {}", dtype_name(c_dtype));
  DP_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm_bf16: negative size {}x{}x{}", m, n, k);
  if (m == 0 || n == 0) return;
  // The operands are widened into dense scratch before sgemm sees them, so its own stride
  // checks would only see the dense widths: check the caller's here.
  DP_CHECK(k == 0 || lda >= (trans_a ? m : k),
           "gemm_bf16: lda={} too small for A ({}x{}, trans={})", lda, trans_a ? k : m,
           trans_a ? m : k, trans_a);
  DP_CHECK(k == 0 || ldb >= (trans_b ? k : n),
           "gemm_bf16: ldb={} too small for B ({}x{}, trans={})", ldb, trans_b ? n : k,
           trans_b ? k : n, trans_b);
  DP_CHECK(ldc >= n, "gemm_bf16: ldc={} smaller than n={}", ldc, n);
  // Per thread and kept: the steady-state step reuses the same capacity every call.
  thread_local std::vector<float> wa, wb, wc;
  const size_t b_rows = trans_b ? size_t(n) : size_t(k), b_cols = trans_b ? size_t(k) : size_t(n);
  const float* fb = widen(b, b_rows, b_cols, size_t(ldb), wb);
  const int ib = static_cast<int>(b_cols);
  // Panels of op(A)'s rows: A is widened one panel at a time (GPT's head takes dL/dlogits
  // [B*T, V] as A: widened whole it was another 785 MiB at GPT-2's vocabulary, 4 x 1024
  // tokens, which float32 training never holds), and a bfloat16 C goes through float32
  // scratch the same way. Each element's sum over k is the whole GEMM's up to the order
  // OpenBLAS's kernels take for a panel's last rows (the last bits; the same shapes always
  // give the same panels, so a run stays deterministic).
  constexpr size_t kAPanelFloats = size_t(16) << 20;  // 64 MiB
  constexpr size_t kCPanelFloats = size_t(4) << 20;   // 16 MiB
  size_t panel = size_t(m);
  if (k > 0) panel = std::min(panel, std::max<size_t>(1, kAPanelFloats / size_t(k)));
  if (c_dtype == DType::bf16)
    panel = std::min(panel, std::max<size_t>(1, kCPanelFloats / size_t(n)));
  const auto* hb = static_cast<const bf16*>(bias);
  for (size_t r0 = 0; r0 < size_t(m); r0 += panel) {
    const size_t rows = std::min(panel, size_t(m) - r0);
    // Rows r0.. of op(A): rows of A, or, when A is transposed (stored k x m), columns.
    const float* pa = trans_a ? widen(a + r0, size_t(k), rows, size_t(lda), wa)
                              : widen(a + r0 * size_t(lda), rows, size_t(k), size_t(lda), wa);
    const int ia = trans_a ? static_cast<int>(rows) : k;
    if (c_dtype == DType::f32) {
      float* fc = static_cast<float*>(c) + r0 * size_t(ldc);
      gemm(trans_a, trans_b, int(rows), n, k, alpha, pa, ia, fb, ib, beta, fc, ldc);
      if (bias != nullptr) {
        for (size_t r = 0; r < rows; ++r)
          add_row_bias(1, size_t(n), static_cast<const float*>(bias), fc + r * size_t(ldc));
      }
      continue;
    }
    bf16* out = static_cast<bf16*>(c) + r0 * size_t(ldc);
    // With beta = 0 sgemm writes C without reading it: the panel needs no zeros first.
    if (beta != 0.0f)
      widen(out, rows, size_t(n), size_t(ldc), wc);
    else
      wc.resize(rows * size_t(n));
    gemm(trans_a, trans_b, int(rows), n, k, alpha, pa, ia, fb, ib, beta, wc.data(), n);
    for (size_t r = 0; r < rows; ++r) {
      float* row = wc.data() + r * size_t(n);
      if (hb != nullptr) {
        for (size_t j = 0; j < size_t(n); ++j) row[j] += bf16_to_float(hb[j]);
      }
      f32_to_bf16(size_t(n), row, out + r * size_t(ldc));
    }
  }
}

namespace {

// The float32 relu's rule, x <= 0 (-0 included; false for a NaN), on the bits: in integer
// lanes without widening the loops vectorise (the float compare kept a branch per element).
DP_SIMD_INLINE bool nonpositive(uint16_t b) {
  const uint16_t magnitude = b & 0x7fffu;
  return magnitude <= 0x7f80u && ((b & 0x8000u) != 0 || magnitude == 0);
}

}  // namespace

DP_SIMD_CLONES void relu_forward_bf16(size_t n, const bf16* x, bf16* y) {
  for (size_t i = 0; i < n; ++i) {
    const uint16_t b = x[i].bits;
    y[i].bits = nonpositive(b) ? uint16_t{0} : b;
  }
}

DP_SIMD_CLONES void relu_backward_bf16(size_t n, const bf16* x, const bf16* dy, bf16* dx) {
  for (size_t i = 0; i < n; ++i) dx[i].bits = nonpositive(x[i].bits) ? uint16_t{0} : dy[i].bits;
}

void col_sum_accumulate_bf16(size_t rows, size_t cols, const bf16* x, float* out) {
  for (size_t r = 0; r < rows; ++r) {
    const bf16* row = x + r * cols;
    for (size_t c = 0; c < cols; ++c) out[c] += bf16_to_float(row[c]);
  }
}

}  // namespace dp
