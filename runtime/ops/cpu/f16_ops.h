#pragma once
// float32 <-> IEEE half arrays on the CPU (what the fp16_compress comm hook puts on the wire
// and takes back): the reference the GPU conversions of the same names
// (runtime/ops/device_ops.h) are tested against. Rounding as runtime/core/f16.h says: to
// nearest even, subnormals included, overflow to infinity; f16 -> f32 is exact.
#include <cstddef>

#include "runtime/core/dtype.h"

namespace dp {

void f32_to_f16(size_t n, const float* x, f16* y);
void f16_to_f32(size_t n, const f16* x, float* y);

}  // namespace dp
