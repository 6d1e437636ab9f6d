// runtime/ops/device_ops.h on top of the dp::cuda kernels: each call makes the device current
// and enqueues on its compute stream.
#include "runtime/ops/device_ops.h"

#include <cuda_runtime_api.h>

#include "runtime/core/cuda/allocator.h"
#include "runtime/core/cuda/context.h"
#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/cuda/stream.h"
#include "runtime/core/error.h"
#include "runtime/ops/cuda/blas.h"
#include "runtime/ops/cuda/elementwise.h"
#include "runtime/ops/cuda/optim.h"
#include "runtime/ops/cuda/softmax_cross_entropy.h"

namespace dp::gpu {

static_assert(sizeof(cuda::CrossEntropyStats) == kCrossEntropyStatsBytes,
              "device_ops.h: kCrossEntropyStatsBytes is out of date");

// dp::bf16 (the host handle) and __nv_bfloat16 are both the 16 bits of a bfloat16: a device
// array of one is a device array of the other.
static_assert(sizeof(bf16) == sizeof(__nv_bfloat16) && alignof(bf16) == alignof(__nv_bfloat16),
              "dp::bf16 and __nv_bfloat16 must have the same layout");
// Likewise dp::f16 and __half.
static_assert(sizeof(f16) == sizeof(__half) && alignof(f16) == alignof(__half),
              "dp::f16 and __half must have the same layout");

namespace {
const __nv_bfloat16* nv(const bf16* p) {
  return reinterpret_cast<const __nv_bfloat16*>(p);
}
__nv_bfloat16* nv(bf16* p) {
  return reinterpret_cast<__nv_bfloat16*>(p);
}
const __half* nv(const f16* p) {
  return reinterpret_cast<const __half*>(p);
}
__half* nv(f16* p) {
  return reinterpret_cast<__half*>(p);
}

// The float32 <-> 16-bit conversions: cuda::narrow / cuda::widen on the compute stream.
template <typename H>
void narrow_on(int device, size_t n, const float* x, H* y) {
  DeviceGuard guard(device);
  cuda::narrow(n, x, nv(y), compute_stream(device));
}
template <typename H>
void widen_on(int device, size_t n, const H* x, float* y) {
  DeviceGuard guard(device);
  cuda::widen(n, nv(x), y, compute_stream(device));
}
}  // namespace

void gemm_f32(int device, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
              const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc,
              const float* bias) {
  DeviceGuard guard(device);
  cuda::gemm(cuda::blas(device), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
             cuda::GemmDtype::f32, bias != nullptr ? cuda::Epilogue::bias : cuda::Epilogue::none,
             bias, compute_stream(device));
}

void col_sum_accumulate(int device, size_t rows, size_t cols, const float* x, float* out) {
  DeviceGuard guard(device);
  cuda::col_sum_accumulate(rows, cols, x, out, compute_stream(device));
}

void relu_forward(int device, size_t n, const float* x, float* y) {
  DeviceGuard guard(device);
  cuda::relu_forward(n, x, y, compute_stream(device));
}

void relu_backward(int device, size_t n, const float* x, const float* dy, float* dx) {
  DeviceGuard guard(device);
  cuda::relu_backward(n, x, dy, dx, compute_stream(device));
}

void scale(int device, size_t n, float alpha, float* x) {
  DeviceGuard guard(device);
  cuda::scale(n, alpha, x, compute_stream(device));
}

CrossEntropyResult softmax_cross_entropy_forward(int device, int64_t batch, int64_t classes,
                                                 const float* logits, const int32_t* labels,
                                                 float* probs, float* row_loss, void* stats) {
  DeviceGuard guard(device);
  cudaStream_t stream = compute_stream(device);
  auto* s = static_cast<cuda::CrossEntropyStats*>(stats);
  cuda::softmax_cross_entropy_forward(batch, classes, logits, labels, probs, row_loss, s, stream);
  // The one sync of a step: the caller wants the loss on the host. Read directly rather than
  // with cuda::read_cross_entropy_stats, which throws without the layer's name.
  cuda::CrossEntropyStats host{};
  DP_CUDA_CHECK(cudaMemcpyAsync(&host, s, sizeof(host), cudaMemcpyDeviceToHost, stream));
  DP_CUDA_CHECK(cudaStreamSynchronize(stream));
  CrossEntropyResult r;
  r.mean_loss = host.mean_loss;
  r.correct = host.correct;
  r.bad_row = host.bad_row;
  r.bad_label = host.bad_label;
  return r;
}

void softmax_cross_entropy_backward(int device, int64_t batch, int64_t classes, const float* probs,
                                    const int32_t* labels, float scale, float* grad) {
  DeviceGuard guard(device);
  cuda::softmax_cross_entropy_backward(batch, classes, probs, labels, scale, grad,
                                       compute_stream(device));
}

void gemm_bf16(int device, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
               const bf16* a, int lda, const bf16* b, int ldb, float beta, void* c, int ldc,
               DType c_dtype, const void* bias) {
  DP_CHECK(c_dtype == DType::f32 || c_dtype == DType::bf16,
           "gemm_bf16: C must be float32 or bfloat16, got {}", dtype_name(c_dtype));
  // A, B bfloat16; C and the bias float32 (bf16_f32) or bfloat16 (bf16), as cuda::gemm wants.
  const cuda::GemmDtype dtype =
      c_dtype == DType::f32 ? cuda::GemmDtype::bf16_f32 : cuda::GemmDtype::bf16;
  DeviceGuard guard(device);
  cuda::gemm(cuda::blas(device), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
             dtype, bias != nullptr ? cuda::Epilogue::bias : cuda::Epilogue::none, bias,
             compute_stream(device));
}

void f32_to_bf16(int device, size_t n, const float* x, bf16* y) {
  narrow_on(device, n, x, y);
}
void bf16_to_f32(int device, size_t n, const bf16* x, float* y) {
  widen_on(device, n, x, y);
}
void f32_to_f16(int device, size_t n, const float* x, f16* y) {
  narrow_on(device, n, x, y);
}
void f16_to_f32(int device, size_t n, const f16* x, float* y) {
  widen_on(device, n, x, y);
}

void relu_forward_bf16(int device, size_t n, const bf16* x, bf16* y) {
  DeviceGuard guard(device);
  cuda::relu_forward(n, nv(x), nv(y), compute_stream(device));
}

void relu_backward_bf16(int device, size_t n, const bf16* x, const bf16* dy, bf16* dx) {
  DeviceGuard guard(device);
  cuda::relu_backward(n, nv(x), nv(dy), nv(dx), compute_stream(device));
}

void col_sum_accumulate_bf16(int device, size_t rows, size_t cols, const bf16* x, float* out) {
  DeviceGuard guard(device);
  cuda::col_sum_accumulate(rows, cols, nv(x), out, compute_stream(device));
}

void sgd_update(int device, size_t n, float lr, float momentum, float dampening, float weight_decay,
                bool nesterov, bool first, float* param, const float* grad, float* buf) {
  DeviceGuard guard(device);
  cuda::sgd_update(n, lr, momentum, dampening, weight_decay, nesterov, first, param, grad, buf,
                   compute_stream(device));
}

void adamw_update(int device, size_t n, float lr, float beta1, float beta2, float eps,
                  float weight_decay, double bias_correction1, double bias_correction2,
                  float* param, const float* grad, float* exp_avg, float* exp_avg_sq) {
  DeviceGuard guard(device);
  cuda::adamw_update(n, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2,
                     param, grad, exp_avg, exp_avg_sq, compute_stream(device));
}

double sum_squares(int device, size_t count, const float* const* xs, const size_t* ns) {
  DeviceGuard guard(device);
  cudaStream_t stream = compute_stream(device);
  // One block for the result and the kernel's scratch; stream-ordered, so it returns to the
  // cache at scope exit and the next call (same stream) gets it back without cudaMalloc.
  DeviceBuffer buf(sizeof(double) + cuda::kSumSquaresScratchBytes, stream, device);
  auto* result = buf.as<double>();
  void* scratch = buf.as<char>() + sizeof(double);
  DP_CUDA_CHECK(cudaMemsetAsync(result, 0, sizeof(double), stream));
  for (size_t i = 0; i < count; ++i)
    if (ns[i] > 0) cuda::sum_squares(ns[i], xs[i], result, scratch, stream, /*accumulate=*/true);
  double host = 0;
  DP_CUDA_CHECK(cudaMemcpyAsync(&host, result, sizeof(double), cudaMemcpyDeviceToHost, stream));
  DP_CUDA_CHECK(cudaStreamSynchronize(stream));
  return host;
}

}  // namespace dp::gpu
