#pragma once
// What layers do at their edges under mixed precision: a layer computes in its compute dtype
// whatever dtype its input came in (and hands the input gradient back in the input's dtype),
// and uses float32 master parameters through their compute-dtype copies.
#include <string>

#include "runtime/core/error.h"
#include "runtime/core/tensor.h"
#include "runtime/nn/buffers.h"
#include "runtime/ops/cast.h"

namespace dp {

// A layer takes a bfloat16 input only when it computes in bfloat16 (its compute dtype is set
// on the whole model at once).
inline void check_input_dtype(const std::string& layer, const Tensor& x, DType compute_dtype) {
  DP_CHECK(compute_dtype == DType::bf16 || x.dtype() == DType::f32,
           "{}: got a bfloat16 input but computes in float32 (set the same compute dtype on "
           "every layer)",
           layer);
}

// grad_output must be a float32 or bfloat16 tensor of the last output's shape.
inline void check_grad_output(const std::string& layer, const Tensor& grad_output,
                              const Tensor& output) {
  DP_CHECK(grad_output.defined() &&
               (grad_output.dtype() == DType::f32 || grad_output.dtype() == DType::bf16) &&
               grad_output.shape() == output.shape(),
           "{}: grad_output is {}, expected the shape of the last output {}", layer,
           grad_output.defined() ? grad_output.str() : "undefined", output.str());
}

// x itself when it has `dtype`, else its conversion into `buf` (reused while it fits).
inline const Tensor& as_dtype(const Tensor& x, DType dtype, Tensor& buf) {
  if (x.dtype() == dtype) return x;
  ensure_like(buf, x, dtype, x.device());
  cast_into(x, buf);
  return buf;
}

}  // namespace dp
