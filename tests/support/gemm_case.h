#pragma once
// GEMM test cases shared by the CPU and GPU GEMM tests: the geometry of a row-major case with
// the CPU gemm's argument conventions, and the bf16-operand case with its inputs.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "runtime/core/dtype.h"

namespace dp::test {

// op(A) is m x k, op(B) k x n, C m x n; `pad` widens every leading dimension, `front` offsets
// every device pointer by that many elements (0: cudaMalloc-aligned; the CPU tests keep 0).
struct GemmGeometry {
  bool ta = false, tb = false;
  int m = 1, n = 1, k = 1;
  float alpha = 1.0f, beta = 0.0f;
  int pad = 0;
  size_t front = 0;

  int a_rows() const { return ta ? k : m; }
  int lda() const { return (ta ? m : k) + pad; }
  int b_rows() const { return tb ? n : k; }
  int ldb() const { return (tb ? k : n) + pad; }
  int ldc() const { return n + pad; }
  size_t c_size() const { return size_t(m) * size_t(ldc()); }
  std::string geometry_str() const {
    return std::string(1, ta ? 'T' : 'N') + (tb ? 'T' : 'N') + " m=" + std::to_string(m) +
           " n=" + std::to_string(n) + " k=" + std::to_string(k) +
           " alpha=" + std::to_string(alpha) + " beta=" + std::to_string(beta) +
           " pad=" + std::to_string(pad) + " front=" + std::to_string(front);
  }
};

// gemm_bf16: A and B bfloat16, C and the bias float32 or bfloat16.
struct Bf16GemmCase : GemmGeometry {
  DType c_dtype = DType::f32;
  bool bias = false;

  std::string str() const {
    return geometry_str() + " C=" + dtype_name(c_dtype) + (bias ? " bias" : "");
  }
};

// The inputs as stored (padding included); C and the bias in both precisions, so that one set
// serves either c_dtype.
struct Bf16GemmData {
  std::vector<bf16> a, b, c_h, bias_h;
  std::vector<float> c_f, bias_f;
};

// beta = 0 must ignore C's old contents, even NaN: C's m x n part becomes NaN in both
// precisions (the padding keeps its values, which the tests check stay untouched).
inline void poison_c_when_beta_is_zero(const GemmGeometry& g, Bf16GemmData& d) {
  if (g.beta != 0.0f) return;
  for (int i = 0; i < g.m; ++i)
    for (int j = 0; j < g.n; ++j) {
      const size_t at = size_t(i) * size_t(g.ldc()) + size_t(j);
      d.c_f[at] = std::numeric_limits<float>::quiet_NaN();
      d.c_h[at] = bf16{0x7fc0};
    }
}

}  // namespace dp::test
