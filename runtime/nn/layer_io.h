#pragma once
// What the transformer layers do at their edges: dtype conversions for mixed precision (see
// Linear: a layer computes in its compute dtype whatever dtype its input came in, and hands
// the input gradient back in the input's dtype), and output buffers of any shape, reused
// while shape, dtype and device stay the same (runtime/nn/buffers.h).
#include "runtime/core/tensor.h"
#include "runtime/nn/buffers.h"
#include "runtime/ops/cast.h"

namespace dp {

// x itself when it has `dtype`, else its conversion into `buf` (reused while it fits).
inline const Tensor& as_dtype(const Tensor& x, DType dtype, Tensor& buf) {
  if (x.dtype() == dtype) return x;
  ensure_like(buf, x, dtype, x.device());
  cast_into(x, buf);
  return buf;
}

inline void ensure_shape(Tensor& buf, const Shape& shape, DType dtype, Device device) {
  if (buf.defined() && buf.shape() == shape && buf.dtype() == dtype && buf.device() == device)
    return;
  buf = Tensor::zeros(shape, dtype, device);
}

}  // namespace dp
