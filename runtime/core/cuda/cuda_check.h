#pragma once
// Every CUDA, cuBLAS(Lt) and NCCL call is checked; a failure becomes a dp::Error naming the
// call, the file and the line, and the library's own description of the error.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

namespace dp {

[[noreturn]] void cuda_fail(const char* call, cudaError_t e, const char* file, int line);
[[noreturn]] void cublas_fail(const char* call, cublasStatus_t s, const char* file, int line);
[[noreturn]] void nccl_fail(const char* call, ncclResult_t r, const char* file, int line);

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

// ncclInProgress is not a failure: a non-blocking communicator reports it while an
// operation is still being set up; callers poll ncclCommGetAsyncError for the outcome.
#define DP_NCCL_CHECK(call)                              \
  do {                                                   \
    ncclResult_t dp_r_ = (call);                         \
    if (dp_r_ != ncclSuccess && dp_r_ != ncclInProgress) \
      ::dp::nccl_fail(#call, dp_r_, __FILE__, __LINE__); \
  } while (0)
