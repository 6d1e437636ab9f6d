#pragma once
// Shared by the transformer's kernels (embedding, layernorm, gelu, attention .cu files) and the
// residual add:
// float32/bfloat16 loads and stores, warp reductions whose result every lane holds, and the
// dtype dispatch of the host entry points. Private to the .cu files of this directory.
#include <cuda_bf16.h>

#include "runtime/core/dtype.h"
#include "runtime/core/error.h"

namespace dp::gpu::detail {

__device__ __forceinline__ float widen(float v) {
  return v;
}
__device__ __forceinline__ float widen(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <typename T>
__device__ __forceinline__ T narrow(float v);
template <>
__device__ __forceinline__ float narrow<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Butterfly reductions over a warp: every lane ends with the same bits (each step adds a
// pair of values in both lanes of the pair, and float addition is commutative), and the
// combining order is fixed, so the result depends on the inputs only.
__device__ __forceinline__ float warp_allsum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float warp_allmax(float v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Kernels that give a warp to each row put this many rows in a block of 256 threads.
constexpr int kWarpRowsPerBlock = 8;

// Calls f(float{}) or f(__nv_bfloat16{}) for the activation dtype: the entry points are
// written once as a generic lambda over the element type.
template <typename F>
void dispatch_float(DType dtype, const char* op, F&& f) {
  if (dtype == DType::f32) return f(float{});
  DP_CHECK(dtype == DType::bf16, "{}: float32 or bfloat16, got {}", op, dtype_name(dtype));
  f(__nv_bfloat16{});
}

}  // namespace dp::gpu::detail
