#include "runtime/ops/tensor_ops.h"

#include <limits>

#include "runtime/core/bf16.h"
#include "runtime/core/error.h"
#include "runtime/core/simd_clones.h"
#include "runtime/ops/cpu/bf16_ops.h"
#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/cpu/gemm.h"
#include "runtime/ops/cuda/residual.h"
#include "runtime/ops/device_ops.h"

namespace dp::ops {

int64_t cols_of(const Tensor& t) {
  return t.ndim() == 0 ? 1 : t.dim(t.ndim() - 1);
}

int64_t rows_of(const Tensor& t) {
  const int64_t c = cols_of(t);
  return c == 0 ? 0 : static_cast<int64_t>(t.numel()) / c;
}

namespace {

int blas_int(int64_t v, const char* what) {
  DP_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(),
           "matmul: {} = {} exceeds the BLAS int range", what, v);
  return static_cast<int>(v);
}

bool is_float(DType d) {
  return d == DType::f32 || d == DType::bf16;
}

void check_same(const char* op, const Tensor& a, const Tensor& b) {
  DP_CHECK(a.defined() && b.defined() && a.numel() == b.numel() && a.dtype() == b.dtype() &&
               a.device() == b.device() && is_float(a.dtype()),
           "{}: operands {} and {} must be float32 or bfloat16 of one size, dtype and device", op,
           a.defined() ? a.str() : "undefined", b.defined() ? b.str() : "undefined");
}

}  // namespace

void matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, float alpha,
            float beta, const Tensor* bias) {
  DP_CHECK(a.ndim() >= 2 && b.ndim() >= 2 && c.ndim() >= 1,
           "matmul: expected matrices, got {} x {} -> {}", a.str(), b.str(), c.str());
  DP_CHECK(a.dtype() == b.dtype() && is_float(a.dtype()),
           "matmul: operands {} and {} must both be float32 or both bfloat16", a.str(), b.str());
  DP_CHECK(c.dtype() == DType::f32 || a.dtype() == DType::bf16,
           "matmul: a {} result needs bfloat16 operands, got {}", c.str(), a.str());
  DP_CHECK(a.device() == b.device() && a.device() == c.device(),
           "matmul: operands on {} and {}, result on {}", a.device().str(), b.device().str(),
           c.device().str());
  const int64_t ar = rows_of(a), ac = cols_of(a), br = rows_of(b), bc = cols_of(b);
  const int64_t m = trans_a ? ac : ar, k = trans_a ? ar : ac;
  const int64_t kb = trans_b ? bc : br, n = trans_b ? br : bc;
  DP_CHECK(k == kb && rows_of(c) == m && cols_of(c) == n,
           "matmul: {}{} x {}{} does not give {} (inner {} vs {})", a.str(), trans_a ? "^T" : "",
           b.str(), trans_b ? "^T" : "", c.str(), k, kb);
  if (bias != nullptr)
    DP_CHECK(bias->numel() == static_cast<size_t>(n) && bias->dtype() == c.dtype() &&
                 bias->device() == c.device(),
             "matmul: bias {} does not fit a {} result", bias->str(), c.str());
  if (m == 0 || n == 0) return;
  const int M = blas_int(m, "m"), N = blas_int(n, "n"), K = blas_int(k, "k");
  const int lda = blas_int(ac, "lda"), ldb = blas_int(bc, "ldb"), ldc = blas_int(n, "ldc");
  const Device d = c.device();
  if (a.dtype() == DType::bf16) {
    const void* bias_p = bias != nullptr ? bias->raw() : nullptr;
    if (d.is_cuda())
      gpu::gemm_bf16(d.index, trans_a, trans_b, M, N, K, alpha, a.data<bf16>(), lda, b.data<bf16>(),
                     ldb, beta, c.raw(), ldc, c.dtype(), bias_p);
    else
      gemm_bf16(trans_a, trans_b, M, N, K, alpha, a.data<bf16>(), lda, b.data<bf16>(), ldb, beta,
                c.raw(), ldc, c.dtype(), bias_p);
    return;
  }
  const float* bias_p = bias != nullptr ? bias->f32() : nullptr;
  if (d.is_cuda()) {
    gpu::gemm_f32(d.index, trans_a, trans_b, M, N, K, alpha, a.f32(), lda, b.f32(), ldb, beta,
                  c.f32(), ldc, bias_p);
    return;
  }
  gemm(trans_a, trans_b, M, N, K, alpha, a.f32(), lda, b.f32(), ldb, beta, c.f32(), ldc);
  if (bias_p != nullptr)
    add_row_bias(static_cast<size_t>(m), static_cast<size_t>(n), bias_p, c.f32());
}

void col_sum_accumulate(const Tensor& x, Tensor& out) {
  DP_CHECK(out.dtype() == DType::f32 && out.numel() == static_cast<size_t>(cols_of(x)) &&
               out.device() == x.device() && is_float(x.dtype()),
           "col_sum_accumulate: {} into {} (a float32 [{}] on the input's device)", x.str(),
           out.str(), cols_of(x));
  const size_t rows = static_cast<size_t>(rows_of(x)), cols = static_cast<size_t>(cols_of(x));
  if (rows == 0) return;
  const Device d = x.device();
  if (x.dtype() == DType::bf16) {
    if (d.is_cuda())
      gpu::col_sum_accumulate_bf16(d.index, rows, cols, x.data<bf16>(), out.f32());
    else
      dp::col_sum_accumulate_bf16(rows, cols, x.data<bf16>(), out.f32());
  } else if (d.is_cuda()) {
    gpu::col_sum_accumulate(d.index, rows, cols, x.f32(), out.f32());
  } else {
    dp::col_sum_accumulate(rows, cols, x.f32(), out.f32());
  }
}

void relu_forward(const Tensor& x, Tensor& y) {
  check_same("relu", x, y);
  const size_t n = x.numel();
  const Device d = x.device();
  if (x.dtype() == DType::bf16) {
    if (d.is_cuda())
      gpu::relu_forward_bf16(d.index, n, x.data<bf16>(), y.data<bf16>());
    else
      dp::relu_forward_bf16(n, x.data<bf16>(), y.data<bf16>());
  } else if (d.is_cuda()) {
    gpu::relu_forward(d.index, n, x.f32(), y.f32());
  } else {
    dp::relu_forward(n, x.f32(), y.f32());
  }
}

void relu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
  check_same("relu backward", x, dy);
  check_same("relu backward", x, dx);
  const size_t n = x.numel();
  const Device d = x.device();
  if (x.dtype() == DType::bf16) {
    if (d.is_cuda())
      gpu::relu_backward_bf16(d.index, n, x.data<bf16>(), dy.data<bf16>(), dx.data<bf16>());
    else
      dp::relu_backward_bf16(n, x.data<bf16>(), dy.data<bf16>(), dx.data<bf16>());
  } else if (d.is_cuda()) {
    gpu::relu_backward(d.index, n, x.f32(), dy.f32(), dx.f32());
  } else {
    dp::relu_backward(n, x.f32(), dy.f32(), dx.f32());
  }
}

namespace {

// y = a + b (b != null) or y += a, on the host.
template <typename T>
void add_host(size_t n, const T* a, const T* b, T* y);

template <>
DP_SIMD_INLINE void add_host<float>(size_t n, const float* a, const float* b, float* y) {
  if (b != nullptr)
    for (size_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
  else
    for (size_t i = 0; i < n; ++i) y[i] += a[i];
}

template <>
DP_SIMD_INLINE void add_host<bf16>(size_t n, const bf16* a, const bf16* b, bf16* y) {
  for (size_t i = 0; i < n; ++i) {
    const float rhs = bf16_to_float(b != nullptr ? b[i] : y[i]);
    y[i] = float_to_bf16(bf16_to_float(a[i]) + rhs);
  }
}

DP_SIMD_CLONES void add_any(const Tensor& a, const Tensor* b, Tensor& y) {
  const size_t n = y.numel();
  const Device d = y.device();
  if (d.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::add(d.index, y.dtype(), n, a.raw(), b != nullptr ? b->raw() : nullptr, y.raw());
    return;
#else
    fail("add: {} is a CUDA tensor but dprun was built without CUDA", y.str());
#endif
  }
  if (y.dtype() == DType::bf16)
    add_host<bf16>(n, a.data<bf16>(), b != nullptr ? b->data<bf16>() : nullptr, y.data<bf16>());
  else
    add_host<float>(n, a.f32(), b != nullptr ? b->f32() : nullptr, y.f32());
}

}  // namespace

void add(const Tensor& a, const Tensor& b, Tensor& y) {
  check_same("add", a, b);
  check_same("add", a, y);
  add_any(a, &b, y);
}

void add_(Tensor& y, const Tensor& x) {
  check_same("add_", x, y);
  add_any(x, nullptr, y);
}

}  // namespace dp::ops
