#pragma once
#include <cstddef>
#include <string>

#include "runtime/nn/module.h"
#include "runtime/ops/window2d.h"

namespace dp {

// torch.nn.MaxPool2d(kernel_size, stride, padding) on x [B, C, H, W] (floor mode, no
// dilation): the first maximum of a window wins a tie, a NaN wins over any number, padding
// is never selected. stride 0 means stride = kernel_size (PyTorch's default); padding may be
// at most kernel_size / 2, as in PyTorch. Computes in its input's dtype (float32 or bfloat16:
// it only selects). No parameters.
class MaxPool2d : public Module {
 public:
  MaxPool2d(std::string name, size_t kernel_size, size_t stride = 0, size_t padding = 0);

  const Tensor& forward(const Tensor& x) override;
  // dx = dy routed to each window's maximum (0 elsewhere; summed where windows overlap).
  const Tensor& backward(const Tensor& grad_output) override;

  size_t kernel_size() const { return kernel_; }
  size_t stride() const { return stride_; }
  size_t padding() const { return padding_; }
  // The output's spatial size for an input of this size; a dp::Error naming the layer when
  // the window does not fit.
  int64_t out_size(int64_t in_size) const;
  // The last forward's argmax (int32, the output's shape): ih * W + iw within each plane.
  const Tensor& argmax() const { return argmax_; }

 private:
  size_t kernel_, stride_, padding_;
  Window2d geometry_;
  Shape input_shape_;
  Tensor output_, argmax_, grad_input_, no_grad_;
};

}  // namespace dp
