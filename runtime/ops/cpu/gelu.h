#pragma once
// GPT-2's GELU (the tanh approximation) on the CPU:
//   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// for float32 and bfloat16 activations (computed in float32, rounded once).
#include <cstddef>

#include "runtime/core/dtype.h"

namespace dp {

void gelu_forward(size_t n, const float* x, float* y);
void gelu_forward(size_t n, const bf16* x, bf16* y);
// dx = dy * gelu'(x). dx may equal dy.
void gelu_backward(size_t n, const float* x, const float* dy, float* dx);
void gelu_backward(size_t n, const bf16* x, const bf16* dy, bf16* dx);

}  // namespace dp
