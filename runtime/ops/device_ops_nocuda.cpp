// runtime/ops/device_ops.h in a build without CUDA: every entry point throws. Unreachable
// through the layers (no CUDA tensor can exist in such a build), but they must link.
#include "runtime/ops/device_ops.h"

#include "runtime/core/error.h"

#ifndef DPRUN_HAVE_CUDA

namespace dp::gpu {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  fail("{} on a CUDA device was requested, but this dprun was built without CUDA", what);
}
}  // namespace

void gemm_f32(int, bool, bool, int, int, int, float, const float*, int, const float*, int, float,
              float*, int, const float*) {
  no_cuda("gemm");
}
void col_sum_accumulate(int, size_t, size_t, const float*, float*) {
  no_cuda("col_sum_accumulate");
}
void relu_forward(int, size_t, const float*, float*) {
  no_cuda("relu_forward");
}
void relu_backward(int, size_t, const float*, const float*, float*) {
  no_cuda("relu_backward");
}
void scale(int, size_t, float, float*) {
  no_cuda("scale");
}
CrossEntropyResult softmax_cross_entropy_forward(int, int64_t, int64_t, const float*,
                                                 const int32_t*, float*, float*, void*) {
  no_cuda("softmax_cross_entropy_forward");
}
void softmax_cross_entropy_backward(int, int64_t, int64_t, const float*, const int32_t*, float,
                                    float*) {
  no_cuda("softmax_cross_entropy_backward");
}
void gemm_bf16(int, bool, bool, int, int, int, float, const bf16*, int, const bf16*, int, float,
               void*, int, DType, const void*) {
  no_cuda("gemm_bf16");
}
void f32_to_bf16(int, size_t, const float*, bf16*) {
  no_cuda("f32_to_bf16");
}
void bf16_to_f32(int, size_t, const bf16*, float*) {
  no_cuda("bf16_to_f32");
}
void f32_to_f16(int, size_t, const float*, f16*) {
  no_cuda("f32_to_f16");
}
void f16_to_f32(int, size_t, const f16*, float*) {
  no_cuda("f16_to_f32");
}
void relu_forward_bf16(int, size_t, const bf16*, bf16*) {
  no_cuda("relu_forward_bf16");
}
void relu_backward_bf16(int, size_t, const bf16*, const bf16*, bf16*) {
  no_cuda("relu_backward_bf16");
}
void col_sum_accumulate_bf16(int, size_t, size_t, const bf16*, float*) {
  no_cuda("col_sum_accumulate_bf16");
}
void sgd_update(int, size_t, float, float, float, float, bool, bool, float*, const float*, float*) {
  no_cuda("sgd_update");
}
void adamw_update(int, size_t, float, float, float, float, float, double, double, float*,
                  const float*, float*, float*) {
  no_cuda("adamw_update");
}
double sum_squares(int, size_t, const float* const*, const size_t*) {
  no_cuda("sum_squares");
}

}  // namespace dp::gpu
#endif
