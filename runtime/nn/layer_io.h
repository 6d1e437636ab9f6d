#pragma once
// What layers do at their edges under mixed precision: a layer computes in its compute dtype
// whatever dtype its input came in (and hands the input gradient back in the input's dtype),
// and uses float32 master parameters through their compute-dtype copies.
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

}  // namespace dp
