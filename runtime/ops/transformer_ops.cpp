#include "runtime/ops/transformer_ops.h"

#include "runtime/core/error.h"
#include "runtime/ops/cpu/embedding.h"
#include "runtime/ops/cpu/gelu.h"
#include "runtime/ops/cpu/layernorm.h"
#include "runtime/ops/cuda/embedding.h"
#include "runtime/ops/cuda/gelu.h"
#include "runtime/ops/cuda/layernorm.h"

namespace dp::ops {

namespace {

bool is_float(DType d) {
  return d == DType::f32 || d == DType::bf16;
}

int64_t last_dim(const Tensor& t) {
  return t.ndim() == 0 ? 1 : t.dim(t.ndim() - 1);
}

// A float32 tensor on `device` of `n` elements (parameters, statistics, gradients).
void check_f32(const char* op, const char* what, const Tensor& t, size_t n, Device device) {
  DP_CHECK(t.defined() && t.dtype() == DType::f32 && t.numel() == n && t.device() == device,
           "{}: {} is {}, expected float32 with {} elements on {}", op, what,
           t.defined() ? t.str() : "undefined", n, device.str());
}

// An activation with `like`'s shape, dtype and device.
void check_like(const char* op, const char* what, const Tensor& t, const Tensor& like) {
  DP_CHECK(t.defined() && t.shape() == like.shape() && t.dtype() == like.dtype() &&
               t.device() == like.device(),
           "{}: {} is {}, expected {} on {}", op, what, t.defined() ? t.str() : "undefined",
           like.str(), like.device().str());
}

// Device scratch, reallocated only when it does not fit (no allocation in the steady state).
[[maybe_unused]] void ensure_scratch(Tensor& t, const Shape& shape, DType dtype, Device device) {
  if (t.defined() && t.shape() == shape && t.dtype() == dtype && t.device() == device) return;
  t = Tensor::zeros(shape, dtype, device);
}

[[noreturn, maybe_unused]] void no_cuda(const char* op, const Tensor& t) {
  fail("{}: {} is a CUDA tensor but dprun was built without CUDA", op, t.str());
}

}  // namespace

int64_t embedding_forward(const Tensor& weight, const Tensor& idx, Tensor& out, Tensor& flag) {
  DP_CHECK(weight.defined() && weight.ndim() == 2 && weight.dtype() == DType::f32,
           "embedding: the table is {}, expected float32 [num, dim]",
           weight.defined() ? weight.str() : "undefined");
  DP_CHECK(idx.defined() && idx.dtype() == DType::i32 && idx.device() == weight.device(),
           "embedding: indices {} must be int32 on the table's device {}",
           idx.defined() ? idx.str() : "undefined", weight.device().str());
  Shape want = idx.shape();
  want.push_back(weight.dim(1));
  DP_CHECK(out.defined() && out.shape() == want && is_float(out.dtype()) &&
               out.device() == weight.device(),
           "embedding: output {} does not fit indices {} into a table {}", out.str(), idx.str(),
           weight.str());
  const size_t n = idx.numel(), dim = size_t(weight.dim(1)), num = size_t(weight.dim(0));
  if (n == 0) return -1;
  const Device d = weight.device();
  if (d.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    ensure_scratch(flag, {1}, DType::i32, d);
    return gpu::embedding_forward(d.index, out.dtype(), n, dim, num, weight.f32(),
                                  idx.data<int32_t>(), out.raw(), flag.data<int32_t>());
#else
    (void)flag;
    no_cuda("embedding", out);
#endif
  }
  if (out.dtype() == DType::bf16)
    return dp::embedding_forward(n, dim, num, weight.f32(), idx.data<int32_t>(), out.data<bf16>());
  return dp::embedding_forward(n, dim, num, weight.f32(), idx.data<int32_t>(), out.f32());
}

void embedding_backward(const Tensor& dout, const Tensor& idx, Tensor& dweight) {
  DP_CHECK(dweight.defined() && dweight.ndim() == 2 && dweight.dtype() == DType::f32,
           "embedding backward: the gradient is {}, expected float32 [num, dim]",
           dweight.defined() ? dweight.str() : "undefined");
  Shape want = idx.shape();
  want.push_back(dweight.dim(1));
  DP_CHECK(dout.defined() && dout.shape() == want && is_float(dout.dtype()) &&
               idx.dtype() == DType::i32 && dout.device() == dweight.device() &&
               idx.device() == dweight.device(),
           "embedding backward: grad_output {} and indices {} do not fit a table gradient {}",
           dout.defined() ? dout.str() : "undefined", idx.str(), dweight.str());
  const size_t n = idx.numel(), dim = size_t(dweight.dim(1)), num = size_t(dweight.dim(0));
  if (n == 0) return;
  const Device d = dweight.device();
  if (d.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::embedding_backward(d.index, dout.dtype(), n, dim, num, dout.raw(), idx.data<int32_t>(),
                            dweight.f32());
    return;
#else
    no_cuda("embedding backward", dout);
#endif
  }
  if (dout.dtype() == DType::bf16)
    dp::embedding_backward(n, dim, num, dout.data<bf16>(), idx.data<int32_t>(), dweight.f32());
  else
    dp::embedding_backward(n, dim, num, dout.f32(), idx.data<int32_t>(), dweight.f32());
}

void layernorm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                       Tensor& y, Tensor& mean, Tensor& rstd) {
  DP_CHECK(x.defined() && is_float(x.dtype()) && x.ndim() >= 1,
           "layernorm: input {} must be float32 or bfloat16", x.defined() ? x.str() : "undefined");
  const size_t cols = size_t(last_dim(x)), rows = cols == 0 ? 0 : x.numel() / cols;
  const Device d = x.device();
  check_f32("layernorm", "weight", weight, cols, d);
  check_f32("layernorm", "bias", bias, cols, d);
  check_like("layernorm", "output", y, x);
  check_f32("layernorm", "mean", mean, rows, d);
  check_f32("layernorm", "rstd", rstd, rows, d);
  if (rows == 0) return;
  if (d.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::layernorm_forward(d.index, x.dtype(), rows, cols, eps, x.raw(), weight.f32(), bias.f32(),
                           y.raw(), mean.f32(), rstd.f32());
    return;
#else
    no_cuda("layernorm", x);
#endif
  }
  if (x.dtype() == DType::bf16)
    dp::layernorm_forward(rows, cols, eps, x.data<bf16>(), weight.f32(), bias.f32(), y.data<bf16>(),
                          mean.f32(), rstd.f32());
  else
    dp::layernorm_forward(rows, cols, eps, x.f32(), weight.f32(), bias.f32(), y.f32(), mean.f32(),
                          rstd.f32());
}

void layernorm_backward(const Tensor& x, const Tensor& dy, const Tensor& weight, const Tensor& mean,
                        const Tensor& rstd, Tensor& dx, Tensor& dweight, Tensor& dbias,
                        Tensor& scratch) {
  DP_CHECK(x.defined() && is_float(x.dtype()) && x.ndim() >= 1,
           "layernorm backward: input {} must be float32 or bfloat16",
           x.defined() ? x.str() : "undefined");
  const size_t cols = size_t(last_dim(x)), rows = cols == 0 ? 0 : x.numel() / cols;
  const Device d = x.device();
  check_like("layernorm backward", "grad_output", dy, x);
  check_like("layernorm backward", "grad_input", dx, x);
  check_f32("layernorm backward", "weight", weight, cols, d);
  check_f32("layernorm backward", "mean", mean, rows, d);
  check_f32("layernorm backward", "rstd", rstd, rows, d);
  check_f32("layernorm backward", "weight gradient", dweight, cols, d);
  check_f32("layernorm backward", "bias gradient", dbias, cols, d);
  if (rows == 0) return;
  if (d.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    ensure_scratch(scratch, {int64_t(rows), int64_t(cols)}, DType::f32, d);
    gpu::layernorm_backward(d.index, x.dtype(), rows, cols, x.raw(), dy.raw(), weight.f32(),
                            mean.f32(), rstd.f32(), dx.raw(), dweight.f32(), dbias.f32(),
                            scratch.f32());
    return;
#else
    (void)scratch;
    no_cuda("layernorm backward", x);
#endif
  }
  if (x.dtype() == DType::bf16)
    dp::layernorm_backward(rows, cols, x.data<bf16>(), dy.data<bf16>(), weight.f32(), mean.f32(),
                           rstd.f32(), dx.data<bf16>(), dweight.f32(), dbias.f32());
  else
    dp::layernorm_backward(rows, cols, x.f32(), dy.f32(), weight.f32(), mean.f32(), rstd.f32(),
                           dx.f32(), dweight.f32(), dbias.f32());
}

void gelu_forward(const Tensor& x, Tensor& y) {
  DP_CHECK(x.defined() && is_float(x.dtype()), "gelu: input {} must be float32 or bfloat16",
           x.defined() ? x.str() : "undefined");
  check_like("gelu", "output", y, x);
  const size_t n = x.numel();
  const Device d = x.device();
  if (d.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::gelu_forward(d.index, x.dtype(), n, x.raw(), y.raw());
    return;
#else
    no_cuda("gelu", x);
#endif
  }
  if (x.dtype() == DType::bf16)
    dp::gelu_forward(n, x.data<bf16>(), y.data<bf16>());
  else
    dp::gelu_forward(n, x.f32(), y.f32());
}

void gelu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
  DP_CHECK(x.defined() && is_float(x.dtype()),
           "gelu backward: input {} must be float32 or bfloat16",
           x.defined() ? x.str() : "undefined");
  check_like("gelu backward", "grad_output", dy, x);
  check_like("gelu backward", "grad_input", dx, x);
  const size_t n = x.numel();
  const Device d = x.device();
  if (d.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::gelu_backward(d.index, x.dtype(), n, x.raw(), dy.raw(), dx.raw());
    return;
#else
    no_cuda("gelu backward", x);
#endif
  }
  if (x.dtype() == DType::bf16)
    dp::gelu_backward(n, x.data<bf16>(), dy.data<bf16>(), dx.data<bf16>());
  else
    dp::gelu_backward(n, x.f32(), dy.f32(), dx.f32());
}

}  // namespace dp::ops
