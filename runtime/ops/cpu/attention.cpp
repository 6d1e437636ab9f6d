#include "runtime/ops/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "runtime/core/error.h"
#include "runtime/core/simd_clones.h"
#include "runtime/ops/cpu/bf16_ops.h"
#include "runtime/ops/cpu/float_io.h"
#include "runtime/ops/cpu/gemm.h"

namespace dp {

namespace {

// Row-major GEMMs over float32 or bfloat16 operands, C float32 or the operands' type.
void mm(bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda,
        const float* b, size_t ldb, float beta, float* c, size_t ldc) {
  gemm(ta, tb, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}
void mm(bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, const bf16* a, size_t lda,
        const bf16* b, size_t ldb, float beta, float* c, size_t ldc) {
  gemm_bf16(ta, tb, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc),
            DType::f32, nullptr);
}
void mm(bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, const bf16* a, size_t lda,
        const bf16* b, size_t ldb, float beta, bf16* c, size_t ldc) {
  gemm_bf16(ta, tb, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc),
            DType::bf16, nullptr);
}

// Rows of a head are processed in panels: panel [r0, r1) only ever sees keys 0 .. r1 - 1, so
// the GEMMs skip the masked upper triangle panel by panel (about half the work for long
// sequences). Panels narrower than this cost more in GEMM efficiency than they save.
// bfloat16 takes one panel: each output is then written once, rounded once.
size_t panel_rows(size_t seq, bool bf16_compute) {
  constexpr size_t kPanel = 64;
  return bf16_compute || seq <= 2 * kPanel ? seq : kPanel;
}

// Row t of the scores (float32, columns 0..t valid) -> probabilities in p[0..T-1], zeros
// past t. `s` may equal p (float32).
template <typename T>
DP_SIMD_INLINE void softmax_row(size_t t, size_t seq, const float* s, T* p) {
  const float mx = cpu_io::lane_max(t + 1, s);
  // The exponentials go to p first when p is float32 (no scratch), else stay in s's row.
  float* e = const_cast<float*>(s);
  for (size_t j = 0; j <= t; ++j) e[j] = cpu_io::exp_clamped(s[j] - mx);
  const float inv = 1.0f / cpu_io::lane_sum(t + 1, [&](size_t j) { return e[j]; });
  for (size_t j = 0; j <= t; ++j) cpu_io::store(p[j], e[j] * inv);
  for (size_t j = t + 1; j < seq; ++j) cpu_io::store(p[j], 0.0f);
}

// Row t: dscore_j = scale * p_j (dp_j - sum_i p_i dp_i) for j <= t, 0 for t < j < width.
// `dp` (float32) holds dL/dp on entry; the result goes to `ds` (may equal dp).
template <typename P, typename D>
DP_SIMD_INLINE void softmax_backward_row(size_t t, size_t width, float scale, const P* p,
                                         const float* dp, D* ds) {
  const float dot = cpu_io::lane_sum(t + 1, [&](size_t j) { return cpu_io::load(p[j]) * dp[j]; });
  for (size_t j = 0; j <= t; ++j) cpu_io::store(ds[j], scale * cpu_io::load(p[j]) * (dp[j] - dot));
  for (size_t j = t + 1; j < width; ++j) cpu_io::store(ds[j], 0.0f);
}

void check(const AttentionShape& s, AttentionScratch scratch, bool bf16_compute) {
  DP_CHECK(s.heads > 0 && s.channels % s.heads == 0,
           "attention: {} channels do not split into {} heads", s.channels, s.heads);
  DP_CHECK(scratch.scores != nullptr && (!bf16_compute || scratch.scores16 != nullptr),
           "attention: missing scratch");
}

template <typename T>
DP_SIMD_INLINE void forward(const AttentionShape& s, const T* qkv, T* att, T* y,
                            AttentionScratch scratch) {
  constexpr bool kBf16 = !std::is_same_v<T, float>;
  check(s, scratch, kBf16);
  const size_t B = s.batch, T_ = s.seq, C = s.channels, H = s.heads, d = C / H;
  const size_t ld = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const size_t panel = panel_rows(T_, kBf16);
  for (size_t b = 0; b < B; ++b) {
    for (size_t h = 0; h < H; ++h) {
      const T* q = qkv + b * T_ * ld + h * d;
      const T* k = q + C;
      const T* v = q + 2 * C;
      T* a = att + (b * H + h) * T_ * T_;
      T* yh = y + b * T_ * C + h * d;
      // float32 scores go straight into att and are normalised in place.
      float* sc = kBf16 ? scratch.scores : reinterpret_cast<float*>(a);
      for (size_t r0 = 0; r0 < T_; r0 += panel) {
        const size_t r1 = std::min(T_, r0 + panel), rows = r1 - r0;
        mm(false, true, rows, r1, d, scale, q + r0 * ld, ld, k, ld, 0.0f, sc + r0 * T_, T_);
        for (size_t t = r0; t < r1; ++t) softmax_row(t, T_, sc + t * T_, a + t * T_);
        mm(false, false, rows, d, r1, 1.0f, a + r0 * T_, T_, v, ld, 0.0f, yh + r0 * C, C);
      }
    }
  }
}

template <typename T>
DP_SIMD_INLINE void backward(const AttentionShape& s, const T* qkv, const T* att, const T* dy,
                             T* dqkv, AttentionScratch scratch) {
  constexpr bool kBf16 = !std::is_same_v<T, float>;
  check(s, scratch, kBf16);
  const size_t B = s.batch, T_ = s.seq, C = s.channels, H = s.heads, d = C / H;
  const size_t ld = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const size_t panel = panel_rows(T_, kBf16);
  for (size_t b = 0; b < B; ++b) {
    for (size_t h = 0; h < H; ++h) {
      const size_t off = b * T_ * ld + h * d;
      const T *q = qkv + off, *k = q + C, *v = q + 2 * C;
      T *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
      const T* a = att + (b * H + h) * T_ * T_;
      const T* dyh = dy + b * T_ * C + h * d;
      float* ds = scratch.scores;  // dL/datt, then dL/dscores (times the scale)
      // The panels add into dk and dv (each key row gets a part from every later panel).
      const float kv_beta = panel == T_ ? 0.0f : 1.0f;
      if (kv_beta != 0.0f)
        for (size_t t = 0; t < T_; ++t)
          for (size_t c = 0; c < d; ++c) {
            cpu_io::store(dk[t * ld + c], 0.0f);
            cpu_io::store(dv[t * ld + c], 0.0f);
          }
      for (size_t r0 = 0; r0 < T_; r0 += panel) {
        const size_t r1 = std::min(T_, r0 + panel), rows = r1 - r0;
        // datt = dy v^T; dv += att^T dy.
        mm(false, true, rows, r1, d, 1.0f, dyh + r0 * C, C, v, ld, 0.0f, ds + r0 * T_, T_);
        mm(true, false, r1, d, rows, 1.0f, a + r0 * T_, T_, dyh + r0 * C, C, kv_beta, dv, ld);
        if constexpr (kBf16) {
          for (size_t t = r0; t < r1; ++t)
            softmax_backward_row(t, r1, scale, a + t * T_, ds + t * T_, scratch.scores16 + t * T_);
          // dq = dscores k; dk += dscores^T q (the 1/sqrt(d) is in dscores).
          mm(false, false, rows, d, r1, 1.0f, scratch.scores16 + r0 * T_, T_, k, ld, 0.0f,
             dq + r0 * ld, ld);
          mm(true, false, r1, d, rows, 1.0f, scratch.scores16 + r0 * T_, T_, q + r0 * ld, ld,
             kv_beta, dk, ld);
        } else {
          for (size_t t = r0; t < r1; ++t)
            softmax_backward_row(t, r1, scale, a + t * T_, ds + t * T_, ds + t * T_);
          mm(false, false, rows, d, r1, 1.0f, ds + r0 * T_, T_, k, ld, 0.0f, dq + r0 * ld, ld);
          mm(true, false, r1, d, rows, 1.0f, ds + r0 * T_, T_, q + r0 * ld, ld, kv_beta, dk, ld);
        }
      }
    }
  }
}

}  // namespace

DP_SIMD_CLONES void attention_forward(const AttentionShape& s, const float* qkv, float* att,
                                      float* y, AttentionScratch scratch) {
  forward(s, qkv, att, y, scratch);
}
DP_SIMD_CLONES void attention_forward(const AttentionShape& s, const bf16* qkv, bf16* att, bf16* y,
                                      AttentionScratch scratch) {
  forward(s, qkv, att, y, scratch);
}
DP_SIMD_CLONES void attention_backward(const AttentionShape& s, const float* qkv, const float* att,
                                       const float* dy, float* dqkv, AttentionScratch scratch) {
  backward(s, qkv, att, dy, dqkv, scratch);
}
DP_SIMD_CLONES void attention_backward(const AttentionShape& s, const bf16* qkv, const bf16* att,
                                       const bf16* dy, bf16* dqkv, AttentionScratch scratch) {
  backward(s, qkv, att, dy, dqkv, scratch);
}

}  // namespace dp
