#include "runtime/ops/cpu/f16_ops.h"

#include "runtime/core/f16.h"

namespace dp {

void f32_to_f16(size_t n, const float* x, f16* y) {
  for (size_t i = 0; i < n; ++i) y[i] = float_to_f16(x[i]);
}

void f16_to_f32(size_t n, const f16* x, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = f16_to_float(x[i]);
}

}  // namespace dp
