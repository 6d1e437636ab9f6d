#include "runtime/ops/attention_ops.h"

#include <limits>

#include "runtime/core/error.h"
#include "runtime/ops/cpu/attention.h"
#include "runtime/ops/cuda/attention.h"

namespace dp::ops {

namespace {

void ensure(Tensor& t, const Shape& shape, DType dtype, Device device) {
  if (t.defined() && t.shape() == shape && t.dtype() == dtype && t.device() == device) return;
  t = Tensor::zeros(shape, dtype, device);
}

// The shape qkv [B, T, 3C] describes, checked.
AttentionShape shape_of(const char* op, const Tensor& qkv, int64_t heads) {
  DP_CHECK(qkv.defined() && qkv.ndim() == 3 && qkv.dim(2) % 3 == 0 &&
               (qkv.dtype() == DType::f32 || qkv.dtype() == DType::bf16),
           "{}: qkv is {}, expected float32 or bfloat16 [batch, seq, 3 * channels]", op,
           qkv.defined() ? qkv.str() : "undefined");
  const int64_t c = qkv.dim(2) / 3;
  DP_CHECK(heads > 0 && c % heads == 0, "{}: {} channels do not split into {} heads", op, c, heads);
  // The GEMMs take int sizes and leading dimensions.
  DP_CHECK(
      qkv.dim(1) <= std::numeric_limits<int>::max() / 3 && c <= std::numeric_limits<int>::max() / 3,
      "{}: {} exceeds the BLAS int range", op, qkv.str());
  return {size_t(qkv.dim(0)), size_t(qkv.dim(1)), size_t(c), size_t(heads)};
}

void check(const char* op, const char* what, const Tensor& t, const Shape& shape,
           const Tensor& like) {
  DP_CHECK(
      t.defined() && t.shape() == shape && t.dtype() == like.dtype() && t.device() == like.device(),
      "{}: {} is {}, expected {}{} on {}", op, what, t.defined() ? t.str() : "undefined",
      dtype_name(like.dtype()), shape_str(shape), like.device().str());
}

// CPU scratch: the scores of one head (and their bfloat16 copy for bfloat16 GEMMs).
AttentionScratch cpu_scratch(AttentionWorkspace& ws, const AttentionShape& s, DType dtype) {
  const int64_t t = int64_t(s.seq);
  ensure(ws.scores, {t, t}, DType::f32, Device::cpu());
  AttentionScratch out{ws.scores.f32(), nullptr};
  if (dtype == DType::bf16) {
    ensure(ws.scores16, {t, t}, DType::bf16, Device::cpu());
    out.scores16 = ws.scores16.data<bf16>();
  }
  return out;
}

[[maybe_unused]] void* gpu_scratch(AttentionWorkspace& ws, const AttentionShape& s, DType dtype,
                                   Device d) {
#ifdef DPRUN_HAVE_CUDA
  const size_t bytes = gpu::attention_scratch_bytes(dtype, s);
  ensure(ws.device, {int64_t((bytes + 3) / 4)}, DType::f32, d);
  return ws.device.raw();
#else
  (void)ws, (void)s, (void)dtype;
  fail("attention: a {} tensor but dprun was built without CUDA", d.str());
#endif
}

}  // namespace

void causal_attention_forward(const Tensor& qkv, int64_t heads, Tensor& att, Tensor& y,
                              AttentionWorkspace& ws) {
  const char* op = "attention";
  const AttentionShape s = shape_of(op, qkv, heads);
  const int64_t B = qkv.dim(0), T = qkv.dim(1), C = qkv.dim(2) / 3;
  check(op, "att", att, {B, heads, T, T}, qkv);
  check(op, "y", y, {B, T, C}, qkv);
  if (qkv.numel() == 0) return;
  const Device d = qkv.device();
  if (d.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::attention_forward(d.index, qkv.dtype(), s, qkv.raw(), att.raw(), y.raw(),
                           gpu_scratch(ws, s, qkv.dtype(), d));
#else
    gpu_scratch(ws, s, qkv.dtype(), d);
#endif
    return;
  }
  const AttentionScratch scratch = cpu_scratch(ws, s, qkv.dtype());
  if (qkv.dtype() == DType::bf16)
    attention_forward(s, qkv.data<bf16>(), att.data<bf16>(), y.data<bf16>(), scratch);
  else
    attention_forward(s, qkv.f32(), att.f32(), y.f32(), scratch);
}

void causal_attention_backward(const Tensor& qkv, const Tensor& att, const Tensor& dy,
                               int64_t heads, Tensor& dqkv, AttentionWorkspace& ws) {
  const char* op = "attention backward";
  const AttentionShape s = shape_of(op, qkv, heads);
  const int64_t B = qkv.dim(0), T = qkv.dim(1), C = qkv.dim(2) / 3;
  check(op, "att", att, {B, heads, T, T}, qkv);
  check(op, "grad_output", dy, {B, T, C}, qkv);
  check(op, "grad qkv", dqkv, qkv.shape(), qkv);
  if (qkv.numel() == 0) return;
  const Device d = qkv.device();
  if (d.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::attention_backward(d.index, qkv.dtype(), s, qkv.raw(), att.raw(), dy.raw(), dqkv.raw(),
                            gpu_scratch(ws, s, qkv.dtype(), d));
#else
    gpu_scratch(ws, s, qkv.dtype(), d);
#endif
    return;
  }
  const AttentionScratch scratch = cpu_scratch(ws, s, qkv.dtype());
  if (qkv.dtype() == DType::bf16)
    attention_backward(s, qkv.data<bf16>(), att.data<bf16>(), dy.data<bf16>(), dqkv.data<bf16>(),
                       scratch);
  else
    attention_backward(s, qkv.f32(), att.f32(), dy.f32(), dqkv.f32(), scratch);
}

}  // namespace dp::ops
