#pragma once
// Fused optimizer updates on the GPU: one kernel per parameter tensor reads the gradient and
// the state once and writes the parameter and the state once. Over a parameter arena
// (runtime/nn/parameter_arena.h) the optimizers call the same kernel ONCE with n = the whole
// block (a grid-stride loop, so any n): one launch per step instead of one per parameter,
// with the same operations on every element, hence bit-identical results; the zero padding
// between parameters stays zero. Same update rules, in the same
// float operation order, as the CPU loops in runtime/ops/cpu/elementwise.h that
// runtime/optim/sgd.cpp and adamw.cpp call (torch.optim.SGD / AdamW). Parameters and state
// are float32 (the fp32 master weights). Device pointers; enqueue on `stream`, no sync.
#include <cuda_runtime_api.h>

#include <cstddef>

namespace dp::cuda {

// One torch.optim.SGD update of n elements:
//   d = grad + weight_decay * param
//   momentum != 0: buf = first ? d : momentum * buf + (1 - dampening) * d
//                  d = nesterov ? d + momentum * buf : buf
//   param -= lr * d
// `first` says the momentum buffer is still empty: torch initialises it to d itself, not to
// zero. grad is read, never written; buf may be null when momentum == 0.
void sgd_update(size_t n, float lr, float momentum, float dampening, float weight_decay,
                bool nesterov, bool first, float* param, const float* grad, float* buf,
                cudaStream_t stream);

// One torch.optim.AdamW update of n elements (amsgrad off). bias_correction1/2 are
// 1 - beta^t for the step t being taken, computed by the caller once per step in double
// (AdamW::step does; 1 - 0.999^t loses most of its digits in float for small t).
void adamw_update(size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                  double bias_correction1, double bias_correction2, float* param, const float* grad,
                  float* exp_avg, float* exp_avg_sq, cudaStream_t stream);

}  // namespace dp::cuda
