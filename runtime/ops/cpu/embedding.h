#pragma once
// Embedding lookup and its gradient on the CPU: rows of a float32 [num, dim] table picked by
// int32 indices. The output is float32 or bfloat16 (rounded once); the gradient is always
// accumulated in float32 (the master gradient).
#include <cstddef>
#include <cstdint>

#include "runtime/core/dtype.h"

namespace dp {

// out[i, :] = weight[idx[i], :] for i < n. Returns the first i whose index is outside
// [0, num), leaving that row and later ones unwritten, or -1 when every index is valid.
int64_t embedding_forward(size_t n, size_t dim, size_t num, const float* weight, const int32_t* idx,
                          float* out);
int64_t embedding_forward(size_t n, size_t dim, size_t num, const float* weight, const int32_t* idx,
                          bf16* out);

// dweight[idx[i], :] += dout[i, :] in increasing i (a fixed order: the same bits every run).
// An index outside [0, num) (changed since forward checked it) is a dp::Error.
void embedding_backward(size_t n, size_t dim, size_t num, const float* dout, const int32_t* idx,
                        float* dweight);
void embedding_backward(size_t n, size_t dim, size_t num, const bf16* dout, const int32_t* idx,
                        float* dweight);

}  // namespace dp
