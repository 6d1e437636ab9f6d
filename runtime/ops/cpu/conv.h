#pragma once
// The CPU pieces of a 2-D convolution as im2col + GEMM (runtime/ops/conv_ops.cpp puts them
// together): unfold one image into a [patch, positions] matrix whose product with the
// [out_channels, patch] weight is the output image, and fold a gradient of that matrix back.
// T is float or bf16 (runtime/core/dtype.h); geometry in runtime/ops/window2d.h, the batch
// field unused (one image per call).
#include <cstdint>

#include "runtime/ops/window2d.h"

namespace dp {

// col[(c, ki, kj), (oh, ow)] = x[c, oh*stride - padding + ki, ow*stride - padding + kj], 0 in
// the padding. x is one [C, H, W] image, col is [patch, positions]. Elements are moved, not
// converted.
template <typename T>
void im2col(const Window2d& g, const T* x, T* col);

// The adjoint of im2col: dx[c, h, w] = the sum of the dcol entries that pixel was copied to,
// summed in float32 and stored once (every element of dx is written; no zeroing needed).
template <typename T>
void col2im(const Window2d& g, const float* dcol, T* dx);

// y[b, c, :] = value[c] for a [batch, channels, plane] tensor (the bias a GEMM then adds to).
template <typename T>
void fill_channels(int64_t batch, int64_t channels, int64_t plane, const float* value, T* y);

// out[c] += sum over b and the plane of x[b, c, :] (the bias gradient of a convolution).
template <typename T>
void channel_sum_accumulate(int64_t batch, int64_t channels, int64_t plane, const T* x, float* out);

}  // namespace dp
