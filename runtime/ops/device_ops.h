#pragma once
// The CUDA operations the layers, the loss and the optimizers dispatch to when their tensors
// are on a GPU. This header has no CUDA includes on purpose: runtime/nn and runtime/optim
// must build without the toolkit. With CUDA, runtime/ops/cuda/device_ops.cpp implements these
// on top of the dp::cuda kernels; without it, runtime/ops/device_ops_nocuda.cpp defines each
// one to throw a dp::Error ("built without CUDA"), which is unreachable in practice since a
// CUDA tensor cannot be created in such a build.
//
// Every function takes the device index of its (device) pointers, makes that device current
// for the call, and only ENQUEUES work on compute_stream(device): no synchronisation and no
// allocation, unless its comment says otherwise. Semantics are those of the CPU functions of
// the same name (runtime/ops/cpu/gemm.h, elementwise.h), which the GPU tests check.
#include <cstddef>
#include <cstdint>

#include "runtime/core/dtype.h"

namespace dp::gpu {

// Row-major float32 C = alpha * op(A) op(B) + beta * C (+ bias[j] per column when bias is not
// null, fused into the GEMM where cuBLASLt can), with the CPU gemm's arguments. Runs on the
// device's shared cuBLASLt context (runtime/ops/cuda/blas.h).
void gemm_f32(int device, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
              const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc,
              const float* bias);

void col_sum_accumulate(int device, size_t rows, size_t cols, const float* x, float* out);
void relu_forward(int device, size_t n, const float* x, float* y);
void relu_backward(int device, size_t n, const float* x, const float* dy, float* dx);
void scale(int device, size_t n, float alpha, float* x);

// Device-side scratch for the loss: the dp::cuda::CrossEntropyStats struct is this many
// bytes (checked by a static_assert in the implementation).
constexpr size_t kCrossEntropyStatsBytes = 16;

// What the loss's forward reports, read back from the device.
struct CrossEntropyResult {
  float mean_loss = 0;
  int64_t correct = 0;    // rows with argmax == label
  int64_t bad_row = -1;   // lowest row whose label is outside [0, classes), or -1
  int32_t bad_label = 0;  // its label
};

// Softmax cross-entropy forward (runtime/ops/cuda/softmax_cross_entropy.h). `stats` points to
// kCrossEntropyStatsBytes of device memory. Unlike the rest this one SYNCHRONISES: it reads
// the stats back for the host. A bad label is returned (bad_row >= 0), not thrown, so that
// the caller can name itself in the error as the CPU path does.
CrossEntropyResult softmax_cross_entropy_forward(int device, int64_t batch, int64_t classes,
                                                 const float* logits, const int32_t* labels,
                                                 float* probs, float* row_loss, void* stats);
void softmax_cross_entropy_backward(int device, int64_t batch, int64_t classes, const float* probs,
                                    const int32_t* labels, float scale, float* grad);

// bf16 mixed precision (--precision bf16), the twins of runtime/ops/cpu/bf16_ops.h. `bf16`
// pointers are device arrays of bfloat16 (the bits of __nv_bfloat16).
// A and B bfloat16, C (and bias, when not null) float32 or bfloat16 as c_dtype says; float32
// accumulation; the bias fused into the cuBLASLt epilogue where it can be.
void gemm_bf16(int device, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
               const bf16* a, int lda, const bf16* b, int ldb, float beta, void* c, int ldc,
               DType c_dtype, const void* bias);
void f32_to_bf16(int device, size_t n, const float* x, bf16* y);
void bf16_to_f32(int device, size_t n, const bf16* x, float* y);
void relu_forward_bf16(int device, size_t n, const bf16* x, bf16* y);
void relu_backward_bf16(int device, size_t n, const bf16* x, const bf16* dy, bf16* dx);
void col_sum_accumulate_bf16(int device, size_t rows, size_t cols, const bf16* x, float* out);

// float32 <-> IEEE half (the fp16_compress comm hook), the twins of runtime/ops/cpu/f16_ops.h:
// __float2half_rn (nearest even, overflow to infinity) and the exact __half2float. `f16`
// pointers are device arrays of the bits of __half.
void f32_to_f16(int device, size_t n, const float* x, f16* y);
void f16_to_f32(int device, size_t n, const f16* x, float* y);

// Fused optimizer updates (runtime/ops/cuda/optim.h).
void sgd_update(int device, size_t n, float lr, float momentum, float dampening, float weight_decay,
                bool nesterov, bool first, float* param, const float* grad, float* buf);
void adamw_update(int device, size_t n, float lr, float beta1, float beta2, float eps,
                  float weight_decay, double bias_correction1, double bias_correction2,
                  float* param, const float* grad, float* exp_avg, float* exp_avg_sq);

// Sum of squares of several device arrays, accumulated in double on the device in a fixed
// order and read back once: SYNCHRONISES (clip_grad_norm needs the number on the host to
// decide whether to scale). Scratch comes from the caching allocator (cached after the first
// call: no cudaMalloc in the steady state).
double sum_squares(int device, size_t count, const float* const* xs, const size_t* ns);

}  // namespace dp::gpu
