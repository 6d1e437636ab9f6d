#pragma once
// The element-wise loops of the training step (layers and optimizers). Each is one pass
// over memory with no allocation; pointers must not alias unless a comment says so, which
// is what lets the compiler vectorise them.
#include <cstddef>

namespace dp {

// y[r, c] += bias[c] for a row-major [rows, cols] y.
void add_row_bias(size_t rows, size_t cols, const float* bias, float* y);
// out[c] += sum_r x[r, c] for a row-major [rows, cols] x (the bias gradient).
void col_sum_accumulate(size_t rows, size_t cols, const float* x, float* out);

// y = x <= 0 ? +0 : x, torch.relu: a NaN stays NaN. y may equal x (in place).
void relu_forward(size_t n, const float* x, float* y);
// dx = x <= 0 ? 0 : dy, PyTorch's threshold_backward: the gradient at 0 is 0 and a NaN x
// passes dy. dx may equal dy.
void relu_backward(size_t n, const float* x, const float* dy, float* dx);

// y += alpha * x.
void axpy(size_t n, float alpha, const float* x, float* y);
// x *= alpha.
void scale(size_t n, float alpha, float* x);
// sum of x[i]^2, accumulated in double so that a norm over millions of gradients is exact
// enough to compare across ranks.
double sum_squares(size_t n, const float* x);

// One torch.optim.SGD update of n elements. `first` says the momentum buffer is still
// empty: torch initialises it to the (decayed) gradient itself, not to zero. grad is read,
// never written; buf is only touched when momentum != 0.
void sgd_update(size_t n, float lr, float momentum, float dampening, float weight_decay,
                bool nesterov, bool first, float* param, const float* grad, float* buf);

// One torch.optim.AdamW update of n elements (amsgrad off). bias_correction1/2 are
// 1 - beta^t for the step t being taken; the caller computes them once per step.
void adamw_update(size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                  double bias_correction1, double bias_correction2, float* param, const float* grad,
                  float* exp_avg, float* exp_avg_sq);

}  // namespace dp
