#include "runtime/ops/cuda/gemm_epilogue.h"

#include "runtime/core/cuda/cuda_check.h"
#include "runtime/ops/cuda/launch.cuh"

namespace dp::cuda::detail {

namespace {

__device__ __forceinline__ float to_float(float v) {
  return v;
}
__device__ __forceinline__ float to_float(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T>
__global__ void gemm_epilogue_kernel(size_t m, size_t n, float beta, const T* __restrict__ bias,
                                     bool relu, T* __restrict__ c, size_t ldc) {
  for (size_t i = row_begin(); i < m; i += row_stride()) {
    T* row = c + i * ldc;
    for (size_t j = col_begin(); j < n; j += col_stride()) {
      float v = beta == 0.0f ? 0.0f : beta * to_float(row[j]);
      if (bias != nullptr) v += to_float(bias[j]);
      if (relu) v = v <= 0.0f ? 0.0f : v;  // a NaN is kept, as by dp::relu_forward
      row[j] = from_float<T>(v);
    }
  }
}

template <typename T>
void launch(int m, int n, float beta, const T* bias, bool relu, T* c, int ldc,
            cudaStream_t stream) {
  if (m <= 0 || n <= 0) return;
  const Launch2d l = launch_2d(static_cast<size_t>(m), static_cast<size_t>(n));
  gemm_epilogue_kernel<T><<<l.grid, l.block, 0, stream>>>(static_cast<size_t>(m),
                                                          static_cast<size_t>(n), beta, bias, relu,
                                                          c, static_cast<size_t>(ldc));
  DP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void gemm_epilogue(int m, int n, float beta, const float* bias, bool relu, float* c, int ldc,
                   cudaStream_t stream) {
  launch(m, n, beta, bias, relu, c, ldc, stream);
}

void gemm_epilogue(int m, int n, float beta, const __nv_bfloat16* bias, bool relu, __nv_bfloat16* c,
                   int ldc, cudaStream_t stream) {
  launch(m, n, beta, bias, relu, c, ldc, stream);
}

}  // namespace dp::cuda::detail
