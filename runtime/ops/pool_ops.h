#pragma once
// Tensor-level 2-D max pooling (PyTorch's semantics, runtime/ops/cpu/pool.h), picking the
// kernel by device and dtype (float32 or bfloat16).
#include "runtime/core/tensor.h"
#include "runtime/ops/window2d.h"

namespace dp::ops {

// y [B, C, OH, OW] and argmax (int32, y's shape: ih * W + iw within the plane) from
// x [B, C, H, W].
void maxpool2d_forward(const Tensor& x, const Window2d& g, Tensor& y, Tensor& argmax);

// dx (x's shape, dy's dtype) = dy routed back to each window's argmax.
void maxpool2d_backward(const Tensor& dy, const Tensor& argmax, const Window2d& g, Tensor& dx);

}  // namespace dp::ops
