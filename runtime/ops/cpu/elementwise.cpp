#include "runtime/ops/cpu/elementwise.h"

#include <cmath>

#include "runtime/core/simd_clones.h"

namespace dp {

DP_SIMD_CLONES void add_row_bias(size_t rows, size_t cols, const float* __restrict__ bias,
                                 float* __restrict__ y) {
  for (size_t r = 0; r < rows; ++r) {
    float* __restrict__ row = y + r * cols;
    for (size_t c = 0; c < cols; ++c) row[c] += bias[c];
  }
}

DP_SIMD_CLONES void col_sum_accumulate(size_t rows, size_t cols, const float* __restrict__ x,
                                       float* __restrict__ out) {
  // Row-outer keeps both streams contiguous; the column loop vectorises.
  for (size_t r = 0; r < rows; ++r) {
    const float* __restrict__ row = x + r * cols;
    for (size_t c = 0; c < cols; ++c) out[c] += row[c];
  }
}

// Both ReLUs test x <= 0 (false for a NaN) rather than x > 0, so that a NaN passes as in
// torch.relu and its threshold_backward: activations gone NaN must reach the loss, not read
// as zeros that hide the divergence. The compare is still one vector instruction.
DP_SIMD_CLONES void relu_forward(size_t n, const float* x, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = x[i] <= 0.0f ? 0.0f : x[i];
}

DP_SIMD_CLONES void relu_backward(size_t n, const float* x, const float* dy, float* dx) {
  // dy is loaded unconditionally: a conditional load keeps the loop scalar and mispredicts
  // on every other element of a BatchNorm-centred input.
  for (size_t i = 0; i < n; ++i) {
    const float g = dy[i];
    dx[i] = x[i] <= 0.0f ? 0.0f : g;
  }
}

DP_SIMD_CLONES void axpy(size_t n, float alpha, const float* __restrict__ x,
                         float* __restrict__ y) {
  for (size_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

DP_SIMD_CLONES void scale(size_t n, float alpha, float* x) {
  for (size_t i = 0; i < n; ++i) x[i] *= alpha;
}

DP_SIMD_CLONES double sum_squares(size_t n, const float* x) {
  // 16 partial sums in double break the add dependency chain, and the lanes vectorise (four
  // could not: the chain bound the loop, 4.5% of an mlp step). Each lane adds in order and
  // the lanes combine in a fixed tree, so every version gives the same bits.
  constexpr size_t kLanes = 16;
  double acc[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (size_t l = 0; l < kLanes; ++l) acc[l] += double(x[i + l]) * x[i + l];
  for (size_t l = 0; i < n; ++i, ++l) acc[l] += double(x[i]) * x[i];
  for (size_t w = kLanes / 2; w > 0; w /= 2)
    for (size_t l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

namespace {

// One pass over memory: param, grad and buf are each read once and param and buf written
// once per element (the update used to be two or three passes, and over a parameter arena's
// whole block a second pass no longer finds the first one's data in cache). The flags are
// template arguments so that each loop body is straight-line, vectorisable code; the float
// operations per element are those of torch.optim.SGD and of cuda::sgd_update.
template <bool kFirst, bool kNesterov>
DP_SIMD_INLINE void sgd_momentum(size_t n, float lr, float momentum, float keep, float weight_decay,
                                 float* __restrict__ param, const float* __restrict__ grad,
                                 float* __restrict__ buf) {
  for (size_t i = 0; i < n; ++i) {
    const float p = param[i];
    const float d = grad[i] + weight_decay * p;
    const float b = kFirst ? d : momentum * buf[i] + keep * d;
    buf[i] = b;
    param[i] = p - lr * (kNesterov ? d + momentum * b : b);
  }
}

}  // namespace

DP_SIMD_CLONES void sgd_update(size_t n, float lr, float momentum, float dampening,
                               float weight_decay, bool nesterov, bool first,
                               float* __restrict__ param, const float* __restrict__ grad,
                               float* __restrict__ buf) {
  if (momentum == 0.0f) {
    for (size_t i = 0; i < n; ++i) param[i] -= lr * (grad[i] + weight_decay * param[i]);
    return;
  }
  const float keep = 1.0f - dampening;
  if (first) {
    if (nesterov)
      sgd_momentum<true, true>(n, lr, momentum, keep, weight_decay, param, grad, buf);
    else
      sgd_momentum<true, false>(n, lr, momentum, keep, weight_decay, param, grad, buf);
  } else {
    if (nesterov)
      sgd_momentum<false, true>(n, lr, momentum, keep, weight_decay, param, grad, buf);
    else
      sgd_momentum<false, false>(n, lr, momentum, keep, weight_decay, param, grad, buf);
  }
}

// AdamW's loop vectorises only when std::sqrt need not set errno (CMakeLists.txt): with
// errno, every version of it stays scalar, 5-6x slower.
static_assert((math_errhandling & MATH_ERRNO) == 0, "build with -fno-math-errno (CMakeLists.txt)");

DP_SIMD_CLONES void adamw_update(size_t n, float lr, float beta1, float beta2, float eps,
                                 float weight_decay, double bias_correction1,
                                 double bias_correction2, float* __restrict__ param,
                                 const float* __restrict__ grad, float* __restrict__ exp_avg,
                                 float* __restrict__ exp_avg_sq) {
  // torch: p *= 1 - lr*wd; m = lerp(m, g, 1-b1); v = b2*v + (1-b2)*g^2;
  //        p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
  const float decay = 1.0f - lr * weight_decay;
  const float step_size = static_cast<float>(lr / bias_correction1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  const float one_minus_b1 = 1.0f - beta1;
  const float one_minus_b2 = 1.0f - beta2;
  for (size_t i = 0; i < n; ++i) {
    const float g = grad[i];
    const float m = exp_avg[i] + one_minus_b1 * (g - exp_avg[i]);
    const float v = beta2 * exp_avg_sq[i] + one_minus_b2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] = param[i] * decay - step_size * (m / (std::sqrt(v) / bc2_sqrt + eps));
  }
}

}  // namespace dp
