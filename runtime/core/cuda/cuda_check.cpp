#include "runtime/core/cuda/cuda_check.h"

#include "runtime/core/error.h"

namespace dp {

void cuda_fail(const char* call, cudaError_t e, const char* file, int line) {
  fail("{} failed at {}:{}: {} ({})", call, file, line, cudaGetErrorString(e), cudaGetErrorName(e));
}

void cublas_fail(const char* call, cublasStatus_t s, const char* file, int line) {
  fail("{} failed at {}:{}: {} ({})", call, file, line, cublasGetStatusString(s),
       cublasGetStatusName(s));
}

}  // namespace dp
