#pragma once
// The geometry of a 2-D sliding window over NCHW images, shared by convolution and pooling
// and by their CPU and CUDA kernels (plain C++, no CUDA). Square kernels, one stride and one
// zero padding for both axes, no dilation: what the layers offer.
#include <cstdint>

namespace dp {

struct Window2d {
  int64_t batch = 0, channels = 0, height = 0, width = 0;
  int64_t kernel = 1, stride = 1, padding = 0;

  // PyTorch's floor-mode output size. Only meaningful when valid().
  int64_t out_h() const { return (height + 2 * padding - kernel) / stride + 1; }
  int64_t out_w() const { return (width + 2 * padding - kernel) / stride + 1; }
  // Output positions per image and channel.
  int64_t positions() const { return out_h() * out_w(); }
  // Input pixels per image and channel.
  int64_t plane() const { return height * width; }
  // Rows of the unfolded (im2col) input: one per (channel, kernel row, kernel column).
  int64_t patch() const { return channels * kernel * kernel; }
  // The window fits the padded image at least once (C++ division truncates towards zero, so
  // out_h() alone would report 1 for a window one pixel too large).
  bool valid() const {
    return batch >= 0 && channels > 0 && height > 0 && width > 0 && kernel > 0 && stride > 0 &&
           padding >= 0 && height + 2 * padding >= kernel && width + 2 * padding >= kernel;
  }
};

}  // namespace dp
