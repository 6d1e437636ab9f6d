#pragma once
// Row-major GEMM on the GPU through cuBLASLt, with the SAME semantics as the CPU gemm
// (runtime/ops/cpu/gemm.h): the layers call one or the other depending on the device and
// nothing else changes, not even the leading dimensions they pass.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace dp::cuda {

// Element types of A and B, and of C. Accumulation is float32 in every case.
enum class GemmDtype : uint8_t {
  f32,       // A, B, C float32; plain fp32 math (CUBLAS_COMPUTE_32F: no TF32), so the result
             // matches the CPU gemm to rounding
  bf16,      // A, B, C bfloat16
  bf16_f32,  // A, B bfloat16, C float32 (e.g. a weight gradient accumulated into fp32 master
             // gradients with beta = 1)
};

// Applied to alpha * op(A) op(B) + beta * C before it is stored:
//   bias:      + bias[j] for every row i (bias is per column of row-major C, i.e. per output
//              feature of a Linear: y = x W^T + b)
//   relu_bias: relu(. + bias[j]); the fallback kernel keeps a NaN as dp::relu_forward does,
//              cuBLASLt's fused RELU_BIAS does not document what it does with one
// The bias has C's element type (float for f32 and bf16_f32, bfloat16 for bf16), n elements.
enum class Epilogue : uint8_t { none, bias, relu_bias };

const char* gemm_dtype_name(GemmDtype d);
const char* epilogue_name(Epilogue e);

// One cuBLASLt handle, a workspace allocated once, and a plan cache for one device. A plan
// (matmul descriptor, three matrix layouts and the algorithm the heuristic picked) is built
// the first time a shape is seen and reused after: the steady-state step creates no
// descriptor and allocates nothing, which also keeps it capturable in a CUDA graph.
//
// Not thread-safe, and the workspace is shared by every call: calls on different streams
// that may run concurrently need a CublasLt each (cuBLAS gives the same advice for its own
// workspace). Destroy it before the device is reset.
class CublasLt {
 public:
  // 32 MiB: what NVIDIA recommends for Hopper (4 MiB is enough before it); larger
  // workspaces let the heuristic pick split-K and stream-K kernels for skinny shapes.
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;

  // device < 0: the current device. The workspace lives on `device`, and every gemm call
  // must be made with that device current.
  explicit CublasLt(int device = -1);
  ~CublasLt();
  CublasLt(const CublasLt&) = delete;
  CublasLt& operator=(const CublasLt&) = delete;

  int device() const;
  // Distinct (shape, flags, dtype, epilogue, pointer alignment) combinations seen so far.
  size_t cached_plans() const;
  // Plans whose epilogue runs as a separate kernel because cuBLASLt had no fused algorithm
  // for it (or the bias pointer is not 16-byte aligned); results are the same, one more pass.
  size_t unfused_epilogue_plans() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// C[m, n] = epilogue(alpha * op(A)[m, k] op(B)[k, n] + beta * C), all row-major; op(X) is
// X^T when trans_x. lda/ldb/ldc are the row strides, in elements, of A, B and C as stored
// (before op): exactly the arguments of the CPU gemm. beta == 0 overwrites C (its old
// contents, even NaN, are ignored); beta == 1 accumulates. C must not overlap A or B.
// Pointers are device pointers on ctx.device(); the call only enqueues work on `stream`.
// Any pointer alignment that the element type allows works (cudaMalloc's 256 bytes is the
// fast path): alignment is part of the plan key.
void gemm(CublasLt& ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
          const void* a, int lda, const void* b, int ldb, float beta, void* c, int ldc,
          GemmDtype dtype, Epilogue epi, const void* bias, cudaStream_t stream);

}  // namespace dp::cuda
