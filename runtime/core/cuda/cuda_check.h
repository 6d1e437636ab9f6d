#pragma once
// Every CUDA and cuBLAS(Lt) call is checked; a failure becomes a dp::Error naming the call, the
// file and the line, and the library's own description of the error. NCCL calls are checked
// in runtime/comm/cuda/nccl_comm.cpp, where a non-blocking communicator's ncclInProgress has
// to be polled to its outcome rather than passed as success.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>  // (not _api.h: callers use its typed cudaMalloc overloads)

namespace dp {

[[noreturn]] void cuda_fail(const char* call, cudaError_t e, const char* file, int line);
[[noreturn]] void cublas_fail(const char* call, cublasStatus_t s, const char* file, int line);

}  // namespace dp

#define DP_CUDA_CHECK(call)                                                      \
  do {                                                                           \
    cudaError_t dp_e_ = (call);                                                  \
    if (dp_e_ != cudaSuccess) ::dp::cuda_fail(#call, dp_e_, __FILE__, __LINE__); \
  } while (0)

#define DP_CUBLAS_CHECK(call)                                                                \
  do {                                                                                       \
    cublasStatus_t dp_s_ = (call);                                                           \
    if (dp_s_ != CUBLAS_STATUS_SUCCESS) ::dp::cublas_fail(#call, dp_s_, __FILE__, __LINE__); \
  } while (0)
