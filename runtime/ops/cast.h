#pragma once
// Element type conversion between float32 and bfloat16 tensors, on either device: the one
// place the mixed-precision layers and the bf16 comm hook change a tensor's dtype.
#include "runtime/core/tensor.h"

namespace dp {

// dst = src converted to dst's dtype (float32 -> bfloat16 rounds to nearest even;
// bfloat16 -> float32 is exact; equal dtypes copy). Same numel, same device; on a GPU the
// conversion is enqueued on the device's compute stream.
void cast_into(const Tensor& src, Tensor& dst);

}  // namespace dp
