#pragma once
// Tensor-level 2-D convolution (im2col + GEMM), picking the kernels by device and dtype, so
// that runtime/nn/conv2d.cpp is written once. Tensors are NCHW and contiguous; activations
// and the weight are float32, or bfloat16 under mixed precision (float32 accumulation);
// parameter gradients are float32 and ACCUMULATED (+=).
#include "runtime/core/tensor.h"
#include "runtime/ops/window2d.h"

namespace dp::ops {

// The scratch a Conv2d keeps from its forward to its backward. The ops below size and lay it
// out for the device they run on (the CPU unfolds one image per GEMM, a GPU the whole batch
// for a single GEMM), reallocating only when the shape, dtype or device changes; the layer
// only owns it.
struct Conv2dWorkspace {
  // The unfolded input (the activations' dtype). A GPU keeps the batch's for the weight
  // gradient; the CPU one image's, unfolded again by the weight gradient (a batch's, 14 MB
  // for the cnn's conv2, went out to L3 and back; one image's stays in L2).
  Tensor col;
  Tensor dcol;  // float32 gradient of col (the CPU: one image's; a GPU: the batch's)
  Tensor out;   // GPU only: the forward GEMM's float32 [out_channels, batch * positions]
  Tensor dout;  // GPU only: dy in that layout (the activations' dtype), for both backward GEMMs
};

// y [B, O, OH, OW] = conv(x [B, C, H, W], weight [O, C, k, k]) + bias [O] with the stride and
// padding of `g` (g.channels = C; g.batch = B). x, weight and y share one dtype; the bias is
// float32 or null.
void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor* bias, const Window2d& g,
                    Conv2dWorkspace& ws, Tensor& y);

// dweight += dL/dweight and, when dbias is not null, dbias += dL/dbias (both float32), from dy
// (the forward output's shape and dtype) and x, the last forward's input, unchanged since
// (the CPU unfolds it again; a GPU reads what that forward unfolded into ws).
void conv2d_backward_params(const Tensor& x, const Tensor& dy, const Window2d& g,
                            Conv2dWorkspace& ws, Tensor& dweight, Tensor* dbias);

// dx (float32 or bfloat16, the input's shape) = dL/dx for the forward's weight. Call after
// conv2d_backward_params for the same dy: a GPU reuses the dy it rearranged there.
void conv2d_backward_input(const Tensor& dy, const Tensor& weight, const Window2d& g,
                           Conv2dWorkspace& ws, Tensor& dx);

}  // namespace dp::ops
