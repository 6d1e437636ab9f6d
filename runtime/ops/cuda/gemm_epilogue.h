#pragma once
// The GEMM's bias/ReLU epilogue as a kernel of its own, for the cases cuBLASLt cannot fuse
// (runtime/ops/cuda/gemm.cpp): k == 0, where there is no product to run, and plans for which
// the heuristic offers no fused algorithm. Private to gemm.cpp.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

namespace dp::cuda::detail {

// c[i, j] = act(beta * c[i, j] + bias[j]) for a row-major [m, n] C with row stride ldc, where
// act is dp::relu_forward's ReLU (a NaN is kept) when relu and the identity otherwise;
// beta == 0 ignores C's old contents (even NaN), bias == nullptr adds nothing. Columns j >= n
// of a padded C are not touched.
void gemm_epilogue(int m, int n, float beta, const float* bias, bool relu, float* c, int ldc,
                   cudaStream_t stream);
void gemm_epilogue(int m, int n, float beta, const __nv_bfloat16* bias, bool relu, __nv_bfloat16* c,
                   int ldc, cudaStream_t stream);

}  // namespace dp::cuda::detail
