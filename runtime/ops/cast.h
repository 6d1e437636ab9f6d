#pragma once
// Element type conversion between float32 and the 16-bit floats (bfloat16, IEEE half)
// tensors, on either device: the one place the mixed-precision layers and the compressing
// comm hooks change a tensor's dtype.
#include "runtime/core/tensor.h"

namespace dp {

// dst = src converted to dst's dtype (float32 -> bfloat16 or float16 rounds to nearest even,
// float16 overflowing to infinity past 65504; back to float32 is exact; equal dtypes copy). Same
// numel, same device; on a GPU the conversion is enqueued on the device's compute stream.
void cast_into(const Tensor& src, Tensor& dst);

}  // namespace dp
