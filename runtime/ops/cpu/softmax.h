#pragma once
// The softmax of one row of logits, for the cross-entropy loss: vectorised (exp_clamped and
// lane sums, runtime/ops/cpu/float_io.h) where libm's expf per logit and a double sum one
// element at a time cost 3x more (1024 x 50257 logits: 304 ms against 87).
#include <cstddef>

namespace dp {

struct SoftmaxRow {
  float max = 0;  // the largest logit (the first, for a tie)
  size_t argmax = 0;
  double sum = 0;  // sum of exp(x - max); -log p[label] = log(sum) - (x[label] - max)
};

// p = exp(x - max) / sum over n >= 1 logits; p may be x (in place). A row with a NaN or an infinity
// is computed with std::exp and comparisons as before vectorisation (its loss stays NaN: a diverged
// run must see it, not a finite number from the clamped exp).
SoftmaxRow softmax_row(size_t n, const float* x, float* p);

}  // namespace dp
