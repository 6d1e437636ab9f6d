#pragma once
// The GPU pieces of a 2-D convolution (runtime/ops/conv_ops.cpp puts them together with the
// cuBLASLt GEMM). Unlike the CPU, which unfolds one image per GEMM, the GPU unfolds the whole
// batch into one [patch, batch * positions] matrix so that each pass is one large GEMM; the
// GEMM's channel-major [out_channels, batch * positions] result is then moved to NCHW.
//
// CUDA-free on purpose (the dispatch includes it in every build and calls it only when built
// with CUDA). Each call makes `device` current and enqueues on its compute stream; `dtype` is
// the activations' (float32 or bfloat16); no atomics, so results are deterministic.
#include <cstdint>

#include "runtime/core/dtype.h"
#include "runtime/ops/window2d.h"

namespace dp::gpu {

// col[(c, ki, kj), b * positions + (oh, ow)] from x [B, C, H, W], 0 in the padding.
void im2col(int device, DType dtype, const Window2d& g, const void* x, void* col);

// dx [B, C, H, W] (dtype): every pixel gathers the float32 dcol entries it was copied to
// (the adjoint of im2col), summed in float32, rounded once.
void col2im(int device, DType dtype, const Window2d& g, const float* dcol, void* dx);

// y[b, c, p] = t[c, b * positions + p] (+ bias[c] when bias is not null), rounded once to
// dtype: the forward GEMM's float32 result to NCHW.
void channel_major_to_nchw(int device, DType dtype, int64_t batch, int64_t channels,
                           int64_t positions, const float* t, const float* bias, void* y);

// t[c, b * positions + p] = dy[b, c, p], both dtype: the upstream gradient in the layout
// the backward GEMMs read.
void nchw_to_channel_major(int device, DType dtype, int64_t batch, int64_t channels,
                           int64_t positions, const void* dy, void* t);

// out[c] += sum over b and p of x[b, c, p] (a convolution's bias gradient), float32 out.
void channel_sum_accumulate(int device, DType dtype, int64_t batch, int64_t channels, int64_t plane,
                            const void* x, float* out);

}  // namespace dp::gpu
