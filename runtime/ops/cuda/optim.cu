#include "runtime/ops/cuda/optim.h"

#include <cmath>

#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/error.h"
#include "runtime/ops/cuda/launch.cuh"

namespace dp::cuda {

namespace {

using detail::global_thread;
using detail::grid_threads;

// The flags are uniform over the launch, so the branches cost no divergence; one kernel keeps
// the four torch variants in one place.
__global__ void sgd_kernel(size_t n, float lr, float momentum, float keep, float weight_decay,
                           bool nesterov, bool first, float* __restrict__ param,
                           const float* __restrict__ grad, float* __restrict__ buf) {
  for (size_t i = global_thread(); i < n; i += grid_threads()) {
    const float p = param[i];
    const float d = grad[i] + weight_decay * p;
    if (momentum == 0.0f) {
      param[i] = p - lr * d;
      continue;
    }
    const float b = first ? d : momentum * buf[i] + keep * d;
    buf[i] = b;
    param[i] = p - lr * (nesterov ? d + momentum * b : b);
  }
}

__global__ void adamw_kernel(size_t n, float decay, float step_size, float bc2_sqrt, float eps,
                             float beta2, float one_minus_b1, float one_minus_b2,
                             float* __restrict__ param, const float* __restrict__ grad,
                             float* __restrict__ exp_avg, float* __restrict__ exp_avg_sq) {
  for (size_t i = global_thread(); i < n; i += grid_threads()) {
    const float g = grad[i];
    const float m0 = exp_avg[i];
    const float m = m0 + one_minus_b1 * (g - m0);  // torch's lerp(m, g, 1 - beta1)
    const float v = beta2 * exp_avg_sq[i] + one_minus_b2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] = param[i] * decay - step_size * (m / (sqrtf(v) / bc2_sqrt + eps));
  }
}

}  // namespace

void sgd_update(size_t n, float lr, float momentum, float dampening, float weight_decay,
                bool nesterov, bool first, float* param, const float* grad, float* buf,
                cudaStream_t stream) {
  if (n == 0) return;
  DP_CHECK(param != nullptr && grad != nullptr, "cuda::sgd_update: null param or grad pointer");
  DP_CHECK(momentum == 0.0f || buf != nullptr,
           "cuda::sgd_update: momentum {} needs a momentum buffer, got a null pointer", momentum);
  sgd_kernel<<<detail::grid_1d(n), detail::kBlock, 0, stream>>>(
      n, lr, momentum, 1.0f - dampening, weight_decay, nesterov, first, param, grad, buf);
  DP_CUDA_CHECK(cudaGetLastError());
}

void adamw_update(size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                  double bias_correction1, double bias_correction2, float* param, const float* grad,
                  float* exp_avg, float* exp_avg_sq, cudaStream_t stream) {
  DP_CHECK(bias_correction1 > 0.0 && bias_correction2 > 0.0,
           "cuda::adamw_update: bias corrections {} and {} must be > 0 (1 - beta^t for the step "
           "t >= 1 being taken)",
           bias_correction1, bias_correction2);
  if (n == 0) return;
  DP_CHECK(param && grad && exp_avg && exp_avg_sq, "cuda::adamw_update: null device pointer");
  // The per-step scalars exactly as the CPU update derives them (in double, then rounded).
  const float decay = 1.0f - lr * weight_decay;
  const float step_size = static_cast<float>(lr / bias_correction1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  adamw_kernel<<<detail::grid_1d(n), detail::kBlock, 0, stream>>>(
      n, decay, step_size, bc2_sqrt, eps, beta2, 1.0f - beta1, 1.0f - beta2, param, grad, exp_avg,
      exp_avg_sq);
  DP_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dp::cuda
