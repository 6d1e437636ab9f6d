#include "runtime/ops/cuda/attention.h"

#include <cmath>
#include <limits>
#include <mutex>
#include <type_traits>
#include <vector>

#include "runtime/core/cuda/context.h"
#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/cuda/stream.h"
#include "runtime/ops/cuda/launch.cuh"
#include "runtime/ops/cuda/transformer_common.cuh"

namespace dp::gpu {

namespace {

using cuda::detail::global_thread;
using cuda::detail::grid_1d;
using cuda::detail::grid_threads;
using cuda::detail::kBlock;
using detail::kWarpRowsPerBlock;
using detail::narrow;
using detail::warp_allmax;
using detail::warp_allsum;
using detail::widen;

// One cuBLAS handle per device, made on first use and kept for the process (like
// compute_stream). cuBLAS (not Lt) because its strided batched GEMM takes the B * H heads in
// one call; the training loop is the only caller, so the handle is used from one thread.
cublasHandle_t handle(int device) {
  static std::mutex mu;
  static std::vector<cublasHandle_t> handles;
  std::lock_guard<std::mutex> lock(mu);
  if (handles.size() <= static_cast<size_t>(device)) handles.resize(size_t(device) + 1, nullptr);
  cublasHandle_t& h = handles[size_t(device)];
  if (h == nullptr) DP_CUBLAS_CHECK(cublasCreate(&h));
  DP_CUBLAS_CHECK(cublasSetStream(h, compute_stream(device)));
  return h;
}

template <typename T>
constexpr cudaDataType_t data_type() {
  return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_16BF;
}

// Row-major C_i = alpha op(A_i) op(B_i) + beta C_i for i < batch, X_i = X + i * stride_x:
// cuBLAS is column-major, and row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T,
// so the operands swap. float32 accumulation (CUBLAS_COMPUTE_32F: no TF32, as the CPU).
template <typename AB, typename Cty>
void gemm_batched(cublasHandle_t h, bool ta, bool tb, int m, int n, int k, float alpha, const AB* a,
                  int lda, long long sa, const AB* b, int ldb, long long sb, float beta, Cty* c,
                  int ldc, long long sc, int batch) {
  DP_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b,
      data_type<AB>(), ldb, sb, a, data_type<AB>(), lda, sa, &beta, c, data_type<Cty>(), ldc, sc,
      batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// [B, T, stride] rows holding head h's channels at off + h*d .. -> [B, H, T, d], and back.
template <typename T>
__global__ void to_heads_kernel(size_t B, size_t T_, size_t H, size_t d, size_t stride, size_t off,
                                const T* __restrict__ src, T* __restrict__ dst) {
  const size_t n = B * H * T_ * d;
  for (size_t e = global_thread(); e < n; e += grid_threads()) {
    const size_t j = e % d, t = (e / d) % T_, h = (e / (d * T_)) % H, b = e / (d * T_ * H);
    dst[e] = src[(b * T_ + t) * stride + off + h * d + j];
  }
}

template <typename T>
__global__ void from_heads_kernel(size_t B, size_t T_, size_t H, size_t d, size_t stride,
                                  size_t off, const T* __restrict__ src, T* __restrict__ dst) {
  const size_t n = B * H * T_ * d;
  for (size_t e = global_thread(); e < n; e += grid_threads()) {
    const size_t j = e % d, t = (e / d) % T_, h = (e / (d * T_)) % H, b = e / (d * T_ * H);
    dst[(b * T_ + t) * stride + off + h * d + j] = src[e];
  }
}

// A warp per score row r (position t = r % T): probabilities over keys 0..t, zeros after.
// `att` may be `scores` (float32): each element is read, then written, by one lane.
template <typename T>
__global__ void causal_softmax_kernel(size_t rows, size_t T_, const float* scores, T* att) {
  const unsigned lane = threadIdx.x % 32;
  for (size_t r = static_cast<size_t>(blockIdx.x) * kWarpRowsPerBlock + threadIdx.x / 32; r < rows;
       r += static_cast<size_t>(gridDim.x) * kWarpRowsPerBlock) {
    const size_t t = r % T_;
    const float* s = scores + r * T_;
    float mx = -INFINITY;
    for (size_t j = lane; j <= t; j += 32) mx = fmaxf(mx, s[j]);
    mx = warp_allmax(mx);
    float sum = 0.0f;
    for (size_t j = lane; j <= t; j += 32) sum += expf(s[j] - mx);
    const float inv = 1.0f / warp_allsum(sum);
    T* p = att + r * T_;
    for (size_t j = lane; j < T_; j += 32) p[j] = narrow<T>(j <= t ? expf(s[j] - mx) * inv : 0.0f);
  }
}

// ds_j = scale * p_j (dp_j - sum_i p_i dp_i) for j <= t, 0 after. `ds` may be `dp` (float32).
template <typename T>
__global__ void causal_softmax_backward_kernel(size_t rows, size_t T_, float scale,
                                               const T* __restrict__ att, const float* dp, T* ds) {
  const unsigned lane = threadIdx.x % 32;
  for (size_t r = static_cast<size_t>(blockIdx.x) * kWarpRowsPerBlock + threadIdx.x / 32; r < rows;
       r += static_cast<size_t>(gridDim.x) * kWarpRowsPerBlock) {
    const size_t t = r % T_;
    const T* p = att + r * T_;
    const float* g = dp + r * T_;
    float dot = 0.0f;
    for (size_t j = lane; j <= t; j += 32) dot += widen(p[j]) * g[j];
    dot = warp_allsum(dot);
    T* o = ds + r * T_;
    for (size_t j = lane; j < T_; j += 32)
      o[j] = narrow<T>(j <= t ? scale * widen(p[j]) * (g[j] - dot) : 0.0f);
  }
}

constexpr size_t kAlign = 256;

size_t aligned(size_t bytes) {
  return (bytes + kAlign - 1) / kAlign * kAlign;
}

// The scratch, carved in this order: q, k, v, y-or-dy, dq, dk, dv ([B, H, T, d] each, in the
// activation dtype), the float32 scores [B, H, T, T], and for bfloat16 their bfloat16 copy
// (the backward GEMMs' operand).
template <typename T>
struct Scratch {
  T *q, *k, *v, *yh, *dq, *dk, *dv;
  float* scores;
  T* scores16;
};

template <typename T>
Scratch<T> carve(const AttentionShape& s, void* base) {
  const size_t head_bytes = aligned(s.batch * s.seq * s.channels * sizeof(T));
  auto* p = static_cast<char*>(base);
  Scratch<T> out{};
  T** slots[] = {&out.q, &out.k, &out.v, &out.yh, &out.dq, &out.dk, &out.dv};
  for (T** slot : slots) {
    *slot = reinterpret_cast<T*>(p);
    p += head_bytes;
  }
  out.scores = reinterpret_cast<float*>(p);
  p += aligned(s.batch * s.heads * s.seq * s.seq * sizeof(float));
  out.scores16 = reinterpret_cast<T*>(p);
  return out;
}

struct Geometry {
  size_t B, T, C, H, d;
  int bh, t, dh;      // int sizes for cuBLAS: B * H, T, d
  long long tt, td;   // strides: one head's scores, one head's rows
  size_t score_rows;  // B * H * T
};

Geometry geometry(const AttentionShape& s) {
  Geometry g{s.batch, s.seq, s.channels, s.heads, s.channels / s.heads, 0, 0, 0, 0, 0, 0};
  DP_CHECK(g.B * g.H <= size_t(std::numeric_limits<int>::max()) &&
               g.T <= size_t(std::numeric_limits<int>::max()),
           "gpu attention: batch {} x heads {} or sequence {} exceed cuBLAS's int range", g.B, g.H,
           g.T);
  g.bh = int(g.B * g.H), g.t = int(g.T), g.dh = int(g.d);
  g.tt = static_cast<long long>(g.T * g.T), g.td = static_cast<long long>(g.T * g.d);
  g.score_rows = g.B * g.H * g.T;
  return g;
}

template <typename T>
void to_heads(const Geometry& g, size_t stride, size_t off, const T* src, T* dst,
              cudaStream_t stream) {
  to_heads_kernel<T>
      <<<grid_1d(g.B * g.T * g.C), kBlock, 0, stream>>>(g.B, g.T, g.H, g.d, stride, off, src, dst);
  DP_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void from_heads(const Geometry& g, size_t stride, size_t off, const T* src, T* dst,
                cudaStream_t stream) {
  from_heads_kernel<T>
      <<<grid_1d(g.B * g.T * g.C), kBlock, 0, stream>>>(g.B, g.T, g.H, g.d, stride, off, src, dst);
  DP_CUDA_CHECK(cudaGetLastError());
}

unsigned row_blocks(size_t rows) {
  return grid_1d(rows, kWarpRowsPerBlock);
}

template <typename T>
void forward(int device, const AttentionShape& s, const T* qkv, T* att, T* y, void* scratch) {
  const Geometry g = geometry(s);
  const Scratch<T> w = carve<T>(s, scratch);
  cudaStream_t stream = compute_stream(device);
  cublasHandle_t h = handle(device);
  for (size_t part = 0; part < 3; ++part)
    to_heads(g, 3 * g.C, part * g.C, qkv, part == 0 ? w.q : part == 1 ? w.k : w.v, stream);
  // float32: the scores go straight into att and are normalised in place.
  float* scores = std::is_same_v<T, float> ? reinterpret_cast<float*>(att) : w.scores;
  const float scale = 1.0f / std::sqrt(static_cast<float>(g.d));
  gemm_batched(h, false, true, g.t, g.t, g.dh, scale, w.q, g.dh, g.td, w.k, g.dh, g.td, 0.0f,
               scores, g.t, g.tt, g.bh);
  causal_softmax_kernel<T><<<row_blocks(g.score_rows), 32 * kWarpRowsPerBlock, 0, stream>>>(
      g.score_rows, g.T, scores, att);
  DP_CUDA_CHECK(cudaGetLastError());
  gemm_batched(h, false, false, g.t, g.dh, g.t, 1.0f, att, g.t, g.tt, w.v, g.dh, g.td, 0.0f, w.yh,
               g.dh, g.td, g.bh);
  from_heads(g, g.C, 0, w.yh, y, stream);
}

template <typename T>
void backward(int device, const AttentionShape& s, const T* qkv, const T* att, const T* dy, T* dqkv,
              void* scratch) {
  const Geometry g = geometry(s);
  const Scratch<T> w = carve<T>(s, scratch);
  cudaStream_t stream = compute_stream(device);
  cublasHandle_t h = handle(device);
  // q, k, v again: the scratch may have served another forward since (it is cheap).
  for (size_t part = 0; part < 3; ++part)
    to_heads(g, 3 * g.C, part * g.C, qkv, part == 0 ? w.q : part == 1 ? w.k : w.v, stream);
  to_heads(g, g.C, 0, dy, w.yh, stream);
  // datt = dy v^T (float32); dv = att^T dy.
  gemm_batched(h, false, true, g.t, g.t, g.dh, 1.0f, w.yh, g.dh, g.td, w.v, g.dh, g.td, 0.0f,
               w.scores, g.t, g.tt, g.bh);
  gemm_batched(h, true, false, g.t, g.dh, g.t, 1.0f, att, g.t, g.tt, w.yh, g.dh, g.td, 0.0f, w.dv,
               g.dh, g.td, g.bh);
  // dscores (times 1/sqrt(d)): in place for float32, a bfloat16 copy for bfloat16 GEMMs.
  T* ds = std::is_same_v<T, float> ? reinterpret_cast<T*>(w.scores) : w.scores16;
  const float scale = 1.0f / std::sqrt(static_cast<float>(g.d));
  causal_softmax_backward_kernel<T>
      <<<row_blocks(g.score_rows), 32 * kWarpRowsPerBlock, 0, stream>>>(g.score_rows, g.T, scale,
                                                                        att, w.scores, ds);
  DP_CUDA_CHECK(cudaGetLastError());
  // dq = dscores k; dk = dscores^T q.
  gemm_batched(h, false, false, g.t, g.dh, g.t, 1.0f, ds, g.t, g.tt, w.k, g.dh, g.td, 0.0f, w.dq,
               g.dh, g.td, g.bh);
  gemm_batched(h, true, false, g.t, g.dh, g.t, 1.0f, ds, g.t, g.tt, w.q, g.dh, g.td, 0.0f, w.dk,
               g.dh, g.td, g.bh);
  for (size_t part = 0; part < 3; ++part)
    from_heads(g, 3 * g.C, part * g.C, part == 0 ? w.dq : part == 1 ? w.dk : w.dv, dqkv, stream);
}

}  // namespace

size_t attention_scratch_bytes(DType dtype, const AttentionShape& s) {
  const size_t elem = dtype_size(dtype);
  const size_t scores = s.batch * s.heads * s.seq * s.seq;
  size_t bytes = 7 * aligned(s.batch * s.seq * s.channels * elem) + aligned(scores * sizeof(float));
  if (dtype != DType::f32) bytes += aligned(scores * elem);
  return bytes;
}

void attention_forward(int device, DType dtype, const AttentionShape& s, const void* qkv, void* att,
                       void* y, void* scratch) {
  if (s.batch == 0 || s.seq == 0) return;
  DeviceGuard guard(device);
  detail::dispatch_float(dtype, "gpu attention", [&](auto t) {
    using T = decltype(t);
    forward<T>(device, s, static_cast<const T*>(qkv), static_cast<T*>(att), static_cast<T*>(y),
               scratch);
  });
}

void attention_backward(int device, DType dtype, const AttentionShape& s, const void* qkv,
                        const void* att, const void* dy, void* dqkv, void* scratch) {
  if (s.batch == 0 || s.seq == 0) return;
  DeviceGuard guard(device);
  detail::dispatch_float(dtype, "gpu attention backward", [&](auto t) {
    using T = decltype(t);
    backward<T>(device, s, static_cast<const T*>(qkv), static_cast<const T*>(att),
                static_cast<const T*>(dy), static_cast<T*>(dqkv), scratch);
  });
}

}  // namespace dp::gpu
