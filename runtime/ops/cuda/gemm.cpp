#include "runtime/ops/cuda/gemm.h"

#include <cublasLt.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <unordered_map>

#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/cuda/stream.h"
#include "runtime/core/error.h"
#include "runtime/ops/cuda/gemm_epilogue.h"

// ---------------------------------------------------------------------------------------
// Row-major on a column-major library
//
// A row-major matrix X of r rows, c columns and row stride ld (element (i, j) at x[i*ld + j])
// is, read by a column-major library with leading dimension ld, the c x r matrix X^T
// (element (j, i) at x[i*ld + j]). So the buffers we hold ARE the transposes, for free.
//
// We want C = op(A) op(B) (row-major, m x n). Its buffer, read column-major, is C^T (n x m,
// ld = ldc), and C^T = op(B)^T op(A)^T. So cuBLASLt computes D = opL(A') opL(B') with
//   A' = our B buffer, B' = our A buffer, D = C buffer, and its sizes M = n, N = m, K = k.
// Our B buffer read column-major is B_stored^T; op(B)^T is that matrix itself when !trans_b
// (opL = N) and its transpose when trans_b (opL = T): opL(A') = trans_b, opL(B') = trans_a.
// The layouts cuBLASLt is given describe the buffers as stored (before opL), column-major:
//
//   combo (trans_a, trans_b)    | opL(A') opL(B') | A' = B buffer   | B' = A buffer   | D = C
//   ----------------------------+-----------------+-----------------+-----------------+--------
//   NN: A [m,k], B [k,n]        |   N      N      | n x k, ld = ldb | k x m, ld = lda | n x m,
//   NT: A [m,k], B [n,k] (x W^T)|   T      N      | k x n, ld = ldb | k x m, ld = lda | ld =
//   TN: A [k,m], B [k,n] (dy^Tx)|   N      T      | n x k, ld = ldb | m x k, ld = lda | ldc
//   TT: A [k,m], B [n,k]        |   T      T      | k x n, ld = ldb | m x k, ld = lda |
//
// (rows x cols of the column-major layout; e.g. NT: B is stored [n, k] row-major, i.e. the
// k x n column-major matrix B^T with ld = ldb, and opL = T turns it into B = op(B)^T, n x k.)
// The leading-dimension conditions are therefore those of the CPU gemm: ldb >= (trans_b ? k
// : n), lda >= (trans_a ? m : k), ldc >= n. A bias epilogue adds a vector along the ROWS of
// D, which are the columns of our row-major C: bias[j] per output feature, as Linear needs.
// ---------------------------------------------------------------------------------------

namespace dp::cuda {

const char* gemm_dtype_name(GemmDtype d) {
  switch (d) {
    case GemmDtype::f32:
      return "f32";
    case GemmDtype::bf16:
      return "bf16";
    case GemmDtype::bf16_f32:
      return "bf16->f32";
  }
  return "?";
}

const char* epilogue_name(Epilogue e) {
  switch (e) {
    case Epilogue::none:
      return "none";
    case Epilogue::bias:
      return "bias";
    case Epilogue::relu_bias:
      return "relu_bias";
  }
  return "?";
}

namespace {

cudaDataType_t ab_type(GemmDtype d) {
  return d == GemmDtype::f32 ? CUDA_R_32F : CUDA_R_16BF;
}
cudaDataType_t c_type(GemmDtype d) {
  return d == GemmDtype::bf16 ? CUDA_R_16BF : CUDA_R_32F;
}
size_t ab_size(GemmDtype d) {
  return d == GemmDtype::f32 ? 4 : 2;
}
size_t c_size(GemmDtype d) {
  return d == GemmDtype::bf16 ? 2 : 4;
}

// Largest power of two dividing the address, capped at 256 (what cuBLASLt assumes unless
// told otherwise). An algorithm chosen for 256-byte aligned operands may use loads that fault
// or read wrong data on a sub-view at an odd offset, so the alignment is both told to the
// heuristic and part of the cache key.
uint16_t alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t low = a & (~a + 1);  // lowest set bit; 0 for a null pointer
  return static_cast<uint16_t>(low == 0 || low > 256 ? 256 : low);
}

// cuBLASLt reads a fused bias with vector loads. The heuristic is documented to look at the
// bias pointer's alignment, but Marian NMT reports misaligned-address faults on A100 below
// 16 bytes; a less aligned bias takes the separate epilogue kernel instead of the risk.
constexpr uint16_t kFusedBiasAlignment = 16;

struct PlanKey {
  int m, n, k, lda, ldb, ldc;
  bool trans_a, trans_b;
  GemmDtype dtype;
  Epilogue epi;
  uint16_t align_a, align_b, align_c, align_bias;

  bool operator==(const PlanKey& o) const {
    return m == o.m && n == o.n && k == o.k && lda == o.lda && ldb == o.ldb && ldc == o.ldc &&
           trans_a == o.trans_a && trans_b == o.trans_b && dtype == o.dtype && epi == o.epi &&
           align_a == o.align_a && align_b == o.align_b && align_c == o.align_c &&
           align_bias == o.align_bias;
  }
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    uint64_t h = 0xcbf29ce484222325ull;
    auto mix = [&h](uint64_t v) { h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
    mix(static_cast<uint32_t>(k.m));
    mix(static_cast<uint32_t>(k.n));
    mix(static_cast<uint32_t>(k.k));
    mix(static_cast<uint32_t>(k.lda));
    mix(static_cast<uint32_t>(k.ldb));
    mix(static_cast<uint32_t>(k.ldc));
    mix((uint64_t{k.trans_a} << 1) | uint64_t{k.trans_b} |
        (uint64_t{static_cast<uint8_t>(k.dtype)} << 2) |
        (uint64_t{static_cast<uint8_t>(k.epi)} << 4));
    mix((uint64_t{k.align_a} << 48) | (uint64_t{k.align_b} << 32) | (uint64_t{k.align_c} << 16) |
        uint64_t{k.align_bias});
    return static_cast<size_t>(h);
  }
};

// Everything cuBLASLt needs for one key, created once. Descriptors are destroyed without
// checking: a destructor must not throw, and a failure there leaks a few bytes at worst.
struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a_desc = nullptr;  // cuBLASLt's A: OUR B buffer (see the mapping)
  cublasLtMatrixLayout_t b_desc = nullptr;  // cuBLASLt's B: OUR A buffer
  cublasLtMatrixLayout_t c_desc = nullptr;  // C and D (in place)
  cublasLtMatmulAlgo_t algo{};
  bool fused_epilogue = false;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (c_desc) cublasLtMatrixLayoutDestroy(c_desc);
    if (b_desc) cublasLtMatrixLayoutDestroy(b_desc);
    if (a_desc) cublasLtMatrixLayoutDestroy(a_desc);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

struct Preference {
  cublasLtMatmulPreference_t pref = nullptr;
  Preference() { DP_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref)); }
  ~Preference() { cublasLtMatmulPreferenceDestroy(pref); }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
  void set_u32(cublasLtMatmulPreferenceAttributes_t attr, uint32_t v) {
    DP_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &v, sizeof(v)));
  }
};

template <typename T>
void set_desc(cublasLtMatmulDesc_t op, cublasLtMatmulDescAttributes_t attr, const T& v) {
  DP_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, attr, &v, sizeof(v)));
}

}  // namespace

struct CublasLt::Impl {
  int device = 0;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::unordered_map<PlanKey, std::unique_ptr<Plan>, PlanKeyHash> plans;
  size_t unfused = 0;

  ~Impl() {
    plans.clear();
    if (workspace) cudaFree(workspace);  // unified addressing: any current device will do
    if (handle) cublasLtDestroy(handle);
  }

  // The heuristic's best algorithm for the plan as configured, or false when it has none.
  bool find_algo(Plan& p, const PlanKey& key) {
    Preference pref;
    const uint64_t ws = kWorkspaceBytes;
    DP_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    pref.set_u32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_b);  // cuBLASLt's A = B
    pref.set_u32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_a);  // cuBLASLt's B = A
    pref.set_u32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_c);
    pref.set_u32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_c);
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(
        handle, p.op, p.a_desc, p.b_desc, p.c_desc, p.c_desc, pref.pref, 1, &result, &found);
    if (s == CUBLAS_STATUS_NOT_SUPPORTED || (s == CUBLAS_STATUS_SUCCESS && found == 0))
      return false;
    if (s != CUBLAS_STATUS_SUCCESS)
      cublas_fail("cublasLtMatmulAlgoGetHeuristic", s, __FILE__, __LINE__);
    if (result.state != CUBLAS_STATUS_SUCCESS) return false;
    p.algo = result.algo;
    return true;
  }

  std::unique_ptr<Plan> make_plan(const PlanKey& key, const void* bias) {
    auto p = std::make_unique<Plan>();
    const cudaDataType_t ab = ab_type(key.dtype), ct = c_type(key.dtype);
    // Plain fp32 accumulation and fp32 alpha/beta for every dtype; for f32 this is also what
    // keeps TF32 off (CUBLAS_COMPUTE_32F_FAST_TF32 would be the opt-in).
    DP_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t op_a = key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // applies to our B
    const cublasOperation_t op_b = key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // applies to our A
    set_desc(p->op, CUBLASLT_MATMUL_DESC_TRANSA, op_a);
    set_desc(p->op, CUBLASLT_MATMUL_DESC_TRANSB, op_b);
    const uint64_t m = static_cast<uint64_t>(key.m), n = static_cast<uint64_t>(key.n),
                   k = static_cast<uint64_t>(key.k);
    DP_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a_desc, ab, key.trans_b ? k : n,
                                               key.trans_b ? n : k, key.ldb));
    DP_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b_desc, ab, key.trans_a ? m : k,
                                               key.trans_a ? k : m, key.lda));
    DP_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c_desc, ct, n, m, key.ldc));

    if (key.epi != Epilogue::none && key.align_bias >= kFusedBiasAlignment) {
      const cublasLtEpilogue_t e =
          key.epi == Epilogue::bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_RELU_BIAS;
      set_desc(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, e);
      set_desc(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, static_cast<int32_t>(ct));
      // The heuristic reads the pointer's value (for its alignment), so it is set first.
      set_desc(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
      p->fused_epilogue = find_algo(*p, key);
      if (!p->fused_epilogue) {
        set_desc(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_DEFAULT);
        set_desc(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(nullptr));
      }
    }
    if (!p->fused_epilogue && !find_algo(*p, key))
      fail(
          "cuda::gemm: cuBLASLt has no algorithm for m={} n={} k={} trans_a={} trans_b={} "
          "lda={} ldb={} ldc={} dtype={} (pointer alignment A={} B={} C={} bytes); leading "
          "dimensions and pointers that are multiples of 16 bytes are the supported fast path",
          key.m, key.n, key.k, key.trans_a, key.trans_b, key.lda, key.ldb, key.ldc,
          gemm_dtype_name(key.dtype), key.align_a, key.align_b, key.align_c);
    if (key.epi != Epilogue::none && !p->fused_epilogue) ++unfused;
    return p;
  }
};

CublasLt::CublasLt(int device) : impl_(std::make_unique<Impl>()) {
  int count = 0;
  DP_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device < 0) DP_CUDA_CHECK(cudaGetDevice(&device));
  DP_CHECK(device < count, "cuda::CublasLt: device {} does not exist ({} visible)", device, count);
  impl_->device = device;
  DeviceGuard guard(device);
  DP_CUBLAS_CHECK(cublasLtCreate(&impl_->handle));
  DP_CUDA_CHECK(cudaMalloc(&impl_->workspace, kWorkspaceBytes));
}

CublasLt::~CublasLt() = default;

int CublasLt::device() const {
  return impl_->device;
}
size_t CublasLt::cached_plans() const {
  return impl_->plans.size();
}
size_t CublasLt::unfused_epilogue_plans() const {
  return impl_->unfused;
}

void gemm(CublasLt& ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
          const void* a, int lda, const void* b, int ldb, float beta, void* c, int ldc,
          GemmDtype dtype, Epilogue epi, const void* bias, cudaStream_t stream) {
  DP_CHECK(m >= 0 && n >= 0 && k >= 0, "cuda::gemm: negative size m={} n={} k={}", m, n, k);
  if (m == 0 || n == 0) return;
  DP_CHECK(c != nullptr, "cuda::gemm: C is a null pointer ({}x{})", m, n);
  DP_CHECK(ldc >= n, "cuda::gemm: ldc={} smaller than n={}", ldc, n);
  DP_CHECK(epi == Epilogue::none || bias != nullptr,
           "cuda::gemm: epilogue {} needs a bias vector of {} elements, got a null pointer",
           epilogue_name(epi), n);
  const size_t ce = c_size(dtype), abe = ab_size(dtype);
  DP_CHECK(reinterpret_cast<uintptr_t>(c) % ce == 0 && reinterpret_cast<uintptr_t>(bias) % ce == 0,
           "cuda::gemm: C {} or bias {} is not aligned to its {}-byte element", c, bias, ce);
  CublasLt::Impl& impl = ctx.impl();
  int current = -1;
  DP_CUDA_CHECK(cudaGetDevice(&current));
  DP_CHECK(current == impl.device,
           "cuda::gemm: called with cuda:{} current but the CublasLt context belongs to cuda:{} "
           "(cudaSetDevice first, or use that device's context)",
           current, impl.device);
  const bool relu = epi == Epilogue::relu_bias;

  if (k == 0) {
    // No product: C = epilogue(beta * C). cuBLASLt rejects K = 0, and the CPU gemm defines it.
    if (epi == Epilogue::none && beta == 1.0f) return;
    if (dtype == GemmDtype::bf16)
      detail::gemm_epilogue(m, n, beta, static_cast<const __nv_bfloat16*>(bias), relu,
                            static_cast<__nv_bfloat16*>(c), ldc, stream);
    else
      detail::gemm_epilogue(m, n, beta, static_cast<const float*>(bias), relu,
                            static_cast<float*>(c), ldc, stream);
    return;
  }

  DP_CHECK(a != nullptr && b != nullptr, "cuda::gemm: A or B is a null pointer (m={} n={} k={})", m,
           n, k);
  // A reversed leading dimension produces plausible garbage, not a crash: check it here.
  DP_CHECK(lda >= (trans_a ? m : k), "cuda::gemm: lda={} too small for A ({}x{}, trans={})", lda,
           trans_a ? k : m, trans_a ? m : k, trans_a);
  DP_CHECK(ldb >= (trans_b ? k : n), "cuda::gemm: ldb={} too small for B ({}x{}, trans={})", ldb,
           trans_b ? n : k, trans_b ? k : n, trans_b);
  DP_CHECK(reinterpret_cast<uintptr_t>(a) % abe == 0 && reinterpret_cast<uintptr_t>(b) % abe == 0,
           "cuda::gemm: A {} or B {} is not aligned to its {}-byte element", a, b, abe);

  const PlanKey key{m,
                    n,
                    k,
                    lda,
                    ldb,
                    ldc,
                    trans_a,
                    trans_b,
                    dtype,
                    epi,
                    alignment(a),
                    alignment(b),
                    alignment(c),
                    epi == Epilogue::none ? uint16_t{0} : alignment(bias)};
  auto it = impl.plans.find(key);
  if (it == impl.plans.end()) it = impl.plans.emplace(key, impl.make_plan(key, bias)).first;
  Plan& p = *it->second;
  // Setting an attribute is a host-side store into the descriptor: no allocation, no sync.
  if (p.fused_epilogue) set_desc(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  DP_CUBLAS_CHECK(cublasLtMatmul(impl.handle, p.op, &alpha, b, p.a_desc, a, p.b_desc, &beta, c,
                                 p.c_desc, c, p.c_desc, &p.algo, impl.workspace,
                                 CublasLt::kWorkspaceBytes, stream));
  if (epi != Epilogue::none && !p.fused_epilogue) {
    // The product (with beta * C) is in C; add the bias and apply the ReLU over it.
    if (dtype == GemmDtype::bf16)
      detail::gemm_epilogue(m, n, 1.0f, static_cast<const __nv_bfloat16*>(bias), relu,
                            static_cast<__nv_bfloat16*>(c), ldc, stream);
    else
      detail::gemm_epilogue(m, n, 1.0f, static_cast<const float*>(bias), relu,
                            static_cast<float*>(c), ldc, stream);
  }
}

}  // namespace dp::cuda
