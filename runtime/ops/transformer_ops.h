#pragma once
// Tensor-level operations of the transformer layers (embedding, LayerNorm, GELU), dispatched
// on device (CPU, CUDA) and dtype (float32, bfloat16) in one place, like tensor_ops.h: the
// layers in runtime/nn are written once over these. Activations (out, x, y, dy, dx) are
// float32 or bfloat16, one dtype per call; tables, parameters, statistics and parameter
// gradients are float32. On a GPU every call only enqueues work on the device's compute
// stream unless its comment says otherwise.
#include <cstdint>

#include "runtime/core/tensor.h"

namespace dp::ops {

// out [..., dim] = rows of weight [num, dim] picked by idx [...] (int32, same device).
// Returns the first flat position of idx holding an index outside [0, num), or -1 (out is
// then complete). On a GPU it SYNCHRONISES to read the answer back, using `flag` (sized here).
int64_t embedding_forward(const Tensor& weight, const Tensor& idx, Tensor& out, Tensor& flag);
// dweight[idx[i], :] += dout[i, :] in a fixed order (deterministic).
void embedding_backward(const Tensor& dout, const Tensor& idx, Tensor& dweight);

// y = LayerNorm(x) over the last dimension; mean and rstd (float32 [rows]) are written for
// backward.
void layernorm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                       Tensor& y, Tensor& mean, Tensor& rstd);
// dx overwritten, dweight and dbias accumulated. `scratch` is sized here (GPU only).
void layernorm_backward(const Tensor& x, const Tensor& dy, const Tensor& weight, const Tensor& mean,
                        const Tensor& rstd, Tensor& dx, Tensor& dweight, Tensor& dbias,
                        Tensor& scratch);

// GPT-2's GELU (tanh approximation) and its gradient; dx may be dy.
void gelu_forward(const Tensor& x, Tensor& y);
void gelu_backward(const Tensor& x, const Tensor& dy, Tensor& dx);

}  // namespace dp::ops
