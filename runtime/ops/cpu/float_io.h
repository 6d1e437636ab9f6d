#pragma once
// Loads and stores of the float element types for CPU kernels written once over float32 and
// bfloat16 storage: widen on load (exact), compute in float32, round once on store.
#include "runtime/core/bf16.h"
#include "runtime/core/dtype.h"

namespace dp {

inline float load(float v) {
  return v;
}
inline float load(bf16 v) {
  return bf16_to_float(v);
}

template <typename T>
T store(float v);
template <>
inline float store<float>(float v) {
  return v;
}
template <>
inline bf16 store<bf16>(float v) {
  return float_to_bf16(v);
}

}  // namespace dp
