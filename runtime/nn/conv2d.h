#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/nn/module.h"
#include "runtime/ops/conv_ops.h"
#include "runtime/ops/window2d.h"

namespace dp {

// 2-D convolution with PyTorch's layouts: x [B, C, H, W], weight [O, C, k, k], bias [O],
// y [B, O, OH, OW] with OH = (H + 2 * padding - k) / stride + 1 (likewise OW). Parameters are
// "<name>.weight" then "<name>.bias", initialised as torch.nn.Conv2d does (U(-1/sqrt(fan_in),
// 1/sqrt(fan_in)) with fan_in = C * k * k, each from its own stream of `seed`); `bias` false
// leaves the bias out.
//
// Computed as im2col + GEMM (runtime/ops/conv_ops.h). With compute dtype bfloat16 the layer
// keeps float32 master parameters and gradients and runs its GEMMs on bfloat16 operands
// (float32 accumulation), like Linear: forward casts the weight each step and a float32 input
// once, and writes a bfloat16 output; backward returns dx in the input's dtype.
class Conv2d : public Module {
 public:
  Conv2d(std::string name, size_t in_channels, size_t out_channels, size_t kernel_size,
         size_t stride, size_t padding, uint64_t seed, bool bias = true);

  const Tensor& forward(const Tensor& x) override;
  // Accumulates dW (and db), signals them ready, THEN computes dx (skipped when
  // needs_input_grad() is false): the Reducer can launch the bucket during the dx GEMMs.
  const Tensor& backward(const Tensor& grad_output) override;

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  bool has_bias() const { return has_bias_; }
  size_t in_channels() const { return in_; }
  size_t out_channels() const { return out_; }
  size_t kernel_size() const { return kernel_; }
  size_t stride() const { return stride_; }
  size_t padding() const { return padding_; }
  // The output's spatial size for an input of height x width; a dp::Error naming the layer
  // when the window does not fit.
  int64_t out_size(int64_t in_size) const;

 private:
  size_t in_, out_, kernel_, stride_, padding_;
  bool has_bias_;
  Parameter weight_;
  Parameter bias_;

  Window2d geometry_;  // of the last forward's input
  // The last input in the compute dtype (no copy in float32): on the CPU backward unfolds it
  // again for the weight gradient.
  Tensor input_;
  Tensor output_;      // [B, O, OH, OW], reused while the shape stays the same
  Tensor grad_input_;  // in the dtype the input came in
  Tensor no_grad_;     // stays undefined
  DType input_dtype_ = DType::f32;
  const Tensor* w_ = nullptr;  // the forward's weight in the compute dtype
  Tensor input16_, weight16_, grad16_;
  ops::Conv2dWorkspace ws_;
};

}  // namespace dp
