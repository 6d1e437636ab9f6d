#include "runtime/ops/cuda/softmax_cross_entropy.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/error.h"
#include "runtime/ops/cuda/launch.cuh"

namespace dp::cuda {

namespace {

constexpr int kNoBadRow = std::numeric_limits<int32_t>::max();
constexpr int kRowsPerBlock = 8;  // one warp per row, 256 threads
constexpr int kFinalBlock = 1024;

__global__ void ce_init_kernel(CrossEntropyStats* stats) {
  stats->mean_loss = 0.0f;
  stats->correct = 0;
  stats->bad_row = kNoBadRow;  // atomicMin target
  stats->bad_label = 0;
}

// One warp per row, grid-stride over rows. Three passes over the row (max and argmax, sum of
// exp, write probs): a row of logits is small enough to stay in L1/L2 between them.
__global__ void ce_rows_kernel(size_t batch, int classes, const float* __restrict__ logits,
                               const int32_t* __restrict__ labels, float* __restrict__ probs,
                               float* __restrict__ row_loss, CrossEntropyStats* stats) {
  const unsigned lane = threadIdx.x % 32;
  const size_t warp = threadIdx.x / 32;
  for (size_t r = static_cast<size_t>(blockIdx.x) * kRowsPerBlock + warp; r < batch;
       r += static_cast<size_t>(gridDim.x) * kRowsPerBlock) {
    const float* x = logits + r * static_cast<size_t>(classes);
    float* p = probs + r * static_cast<size_t>(classes);

    // Max and the first index reaching it. Each lane walks j = lane, lane + 32, ... in
    // increasing order, so a strict > keeps its first maximum; the butterfly then prefers
    // the lower index on equal values. A lane with no element has index `classes`, which
    // loses every comparison. NaN as the CPU's scan `if (x[j] > x[arg]) arg = j` from arg = 0
    // treats it: element 0 is the starting candidate even when it is NaN (then nothing beats
    // it), any other NaN is never taken (so a lane must not start from one either, or it would
    // hide the later elements of its stride).
    float best = -INFINITY;
    int best_j = classes;
    for (int j = static_cast<int>(lane); j < classes; j += 32) {
      const float v = x[j];
      if (best_j == classes ? (j == 0 || !isnan(v)) : v > best) {
        best = v;
        best_j = j;
      }
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, offset);
      const int oj = __shfl_xor_sync(0xffffffffu, best_j, offset);
      if (oj != classes && (best_j == classes || ov > best || (ov == best && oj < best_j))) {
        best = ov;
        best_j = oj;
      }
    }
    // The xor butterfly leaves every lane with the same pair for ordinary inputs; a NaN logit
    // breaks the order it relies on, so lane 0's pair is made the row's, whatever the input.
    best = __shfl_sync(0xffffffffu, best, 0);
    best_j = __shfl_sync(0xffffffffu, best_j, 0);

    // The sum in double, as the CPU loss does: 50k vocabulary terms summed in float would
    // carry a relative error of ~1e-5 into every probability and into the loss.
    double sum = 0.0;
    for (int j = static_cast<int>(lane); j < classes; j += 32) sum += expf(x[j] - best);
    sum = detail::warp_sum(sum);
    sum = __shfl_sync(0xffffffffu, sum, 0);  // warp_sum leaves the total in lane 0
    const float inv = static_cast<float>(1.0 / sum);
    for (int j = static_cast<int>(lane); j < classes; j += 32) p[j] = expf(x[j] - best) * inv;

    if (lane == 0) {
      const int32_t y = labels[r];
      if (y < 0 || y >= classes) {
        atomicMin(&stats->bad_row, static_cast<int>(r));
        row_loss[r] = NAN;
      } else {
        // -log softmax[y] = log(sum) - (x[y] - max)
        row_loss[r] = static_cast<float>(log(sum) - (static_cast<double>(x[y]) - best));
        if (best_j == y) atomicAdd(&stats->correct, 1);  // integer: order-independent
      }
    }
  }
}

// One block: the mean of row_loss in double, in a fixed order; and the bad row's label.
__global__ void ce_final_kernel(size_t batch, const float* __restrict__ row_loss,
                                const int32_t* __restrict__ labels, CrossEntropyStats* stats) {
  double s = 0.0;
  for (size_t i = threadIdx.x; i < batch; i += blockDim.x) s += row_loss[i];
  s = detail::block_sum(s);
  if (threadIdx.x == 0) {
    stats->mean_loss = static_cast<float>(s / static_cast<double>(batch));
    const int bad = stats->bad_row;
    if (bad == kNoBadRow) {
      stats->bad_row = -1;
    } else {
      stats->bad_label = labels[bad];
    }
  }
}

__global__ void ce_backward_kernel(size_t batch, size_t classes, const float* probs,
                                   const int32_t* __restrict__ labels, float k, float* grad) {
  for (size_t r = detail::row_begin(); r < batch; r += detail::row_stride()) {
    const int32_t y = labels[r];  // out of range: matches no column, no onehot term
    const float* p = probs + r * classes;
    float* g = grad + r * classes;
    for (size_t j = detail::col_begin(); j < classes; j += detail::col_stride()) {
      float v = k * p[j];
      if (static_cast<int64_t>(j) == y) v -= k;
      g[j] = v;
    }
  }
}

void check_shape(const char* what, int64_t batch, int64_t classes) {
  DP_CHECK(batch > 0 && classes > 0, "cuda::{}: empty logits [{}, {}]", what, batch, classes);
  // The kernels index classes with int (j + 32 must not overflow) and report rows as int32.
  DP_CHECK(batch < kNoBadRow && classes <= std::numeric_limits<int32_t>::max() - 32,
           "cuda::{}: logits [{}, {}] exceed the int32 range of the labels", what, batch, classes);
}

}  // namespace

void softmax_cross_entropy_forward(int64_t batch, int64_t classes, const float* logits,
                                   const int32_t* labels, float* probs, float* row_loss,
                                   CrossEntropyStats* stats, cudaStream_t stream) {
  check_shape("softmax_cross_entropy_forward", batch, classes);
  DP_CHECK(logits && labels && probs && row_loss && stats,
           "cuda::softmax_cross_entropy_forward: null device pointer");
  DP_CHECK(static_cast<const void*>(logits) != static_cast<const void*>(probs),
           "cuda::softmax_cross_entropy_forward: probs must not alias logits (each row is read "
           "three times)");
  const size_t b = static_cast<size_t>(batch);
  ce_init_kernel<<<1, 1, 0, stream>>>(stats);
  DP_CUDA_CHECK(cudaGetLastError());
  const size_t blocks = std::min((b + kRowsPerBlock - 1) / kRowsPerBlock, detail::kMaxGrid);
  ce_rows_kernel<<<static_cast<unsigned>(blocks), kRowsPerBlock * 32, 0, stream>>>(
      b, static_cast<int>(classes), logits, labels, probs, row_loss, stats);
  DP_CUDA_CHECK(cudaGetLastError());
  ce_final_kernel<<<1, kFinalBlock, 0, stream>>>(b, row_loss, labels, stats);
  DP_CUDA_CHECK(cudaGetLastError());
}

void softmax_cross_entropy_backward(int64_t batch, int64_t classes, const float* probs,
                                    const int32_t* labels, float scale, float* grad,
                                    cudaStream_t stream) {
  check_shape("softmax_cross_entropy_backward", batch, classes);
  DP_CHECK(probs && labels && grad, "cuda::softmax_cross_entropy_backward: null device pointer");
  // The same float expression as the CPU loss: k = scale / B, then k * p (- k).
  const float k = scale / static_cast<float>(batch);
  const detail::Launch2d l =
      detail::launch_2d(static_cast<size_t>(batch), static_cast<size_t>(classes));
  ce_backward_kernel<<<l.grid, l.block, 0, stream>>>(
      static_cast<size_t>(batch), static_cast<size_t>(classes), probs, labels, k, grad);
  DP_CUDA_CHECK(cudaGetLastError());
}

CrossEntropyStats read_cross_entropy_stats(const CrossEntropyStats* stats, int64_t classes,
                                           cudaStream_t stream) {
  DP_CHECK(stats != nullptr, "cuda::read_cross_entropy_stats: null device pointer");
  CrossEntropyStats host{};
  DP_CUDA_CHECK(cudaMemcpyAsync(&host, stats, sizeof(host), cudaMemcpyDeviceToHost, stream));
  DP_CUDA_CHECK(cudaStreamSynchronize(stream));
  DP_CHECK(host.bad_row < 0,
           "softmax_cross_entropy: label {} at batch index {} is out of range for {} classes "
           "(expected 0..{})",
           host.bad_label, host.bad_row, classes, classes - 1);
  return host;
}

}  // namespace dp::cuda
