#pragma once
// The layers' output and workspace buffers: reused while shape, dtype and device stay the
// same, so the steady-state step allocates nothing (module.h) and a new batch size (the
// last, smaller batch) costs one allocation.
#include <cstdint>

#include "runtime/core/tensor.h"

namespace dp {

inline void ensure_2d(Tensor& buf, int64_t rows, int64_t cols, DType dtype, Device device) {
  if (buf.defined() && buf.ndim() == 2 && buf.dim(0) == rows && buf.dim(1) == cols &&
      buf.dtype() == dtype && buf.device() == device)
    return;
  buf = Tensor::zeros({rows, cols}, dtype, device);
}

inline void ensure_1d(Tensor& buf, int64_t n, DType dtype, Device device) {
  if (buf.defined() && buf.ndim() == 1 && buf.dim(0) == n && buf.dtype() == dtype &&
      buf.device() == device)
    return;
  buf = Tensor::zeros({n}, dtype, device);
}

inline void ensure_shape(Tensor& buf, const Shape& shape, DType dtype, Device device) {
  if (buf.defined() && buf.shape() == shape && buf.dtype() == dtype && buf.device() == device)
    return;
  buf = Tensor::zeros(shape, dtype, device);
}

inline void ensure_like(Tensor& buf, const Tensor& like, DType dtype, Device device) {
  if (buf.defined() && buf.shape() == like.shape() && buf.dtype() == dtype &&
      buf.device() == device)
    return;
  buf = Tensor::zeros(like.shape(), dtype, device);
}

inline void ensure_like(Tensor& buf, const Tensor& like) {
  ensure_like(buf, like, like.dtype(), like.device());
}

}  // namespace dp
