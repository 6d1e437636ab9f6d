#pragma once
// 2-D max pooling on the CPU, PyTorch's semantics (torch.nn.MaxPool2d, floor mode, no
// dilation): the window never reads padding, the first maximum in row-major window order
// wins a tie, and a NaN wins over any number (the last NaN of the window, as PyTorch's CPU
// kernel). T is float or bf16 (runtime/core/dtype.h).
#include <cstdint>

#include "runtime/ops/window2d.h"

namespace dp {

// y [B, C, OH, OW] from x [B, C, H, W]; argmax[b, c, oh, ow] = ih * W + iw of the chosen
// input pixel within its [H, W] plane (PyTorch's `indices`).
template <typename T>
void maxpool2d_forward(const Window2d& g, const T* x, T* y, int32_t* argmax);

// dx = 0, then dx[b, c, argmax] += dy[b, c, oh, ow] for every output (summed in float32 when
// windows overlap, rounded once).
template <typename T>
void maxpool2d_backward(const Window2d& g, const T* dy, const int32_t* argmax, T* dx);

}  // namespace dp
