#pragma once
// Loads and stores for kernels written once over float32 and bfloat16 activations (widen on
// load, compute in float32, round once to nearest even on store), and the dispatch from a
// DType to the element type. Private to the .cu files of this directory.
#include <cuda_bf16.h>

#include "runtime/core/dtype.h"
#include "runtime/core/error.h"

namespace dp::cuda::detail {

__device__ __forceinline__ float load(float v) {
  return v;
}
__device__ __forceinline__ float load(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T store(float v);
template <>
__device__ __forceinline__ float store<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Calls f(T{}) with T = float or __nv_bfloat16 as `dtype` says; `what` names the operation
// in the error for any other dtype.
template <typename F>
void with_float_type(DType dtype, const char* what, F&& f) {
  if (dtype == DType::f32) {
    f(float{});
    return;
  }
  DP_CHECK(dtype == DType::bf16, "{}: float32 or bfloat16 activations, got {}", what,
           dtype_name(dtype));
  f(__nv_bfloat16{});
}

// Division rounding down for a possibly negative numerator and a positive divisor.
__device__ __forceinline__ long long floor_div(long long a, long long b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

}  // namespace dp::cuda::detail
