#pragma once
// bfloat16 and IEEE half side by side, for code written once for both 16-bit storage types
// (the collectives that sum them in float32, the casts): widen() is exact, narrow<H>() rounds
// to nearest even (runtime/core/bf16.h, runtime/core/f16.h).
#include "runtime/core/bf16.h"
#include "runtime/core/f16.h"

namespace dp {

inline float widen(bf16 h) {
  return bf16_to_float(h);
}
inline float widen(f16 h) {
  return f16_to_float(h);
}

template <typename H>
H narrow(float f);
template <>
inline bf16 narrow<bf16>(float f) {
  return float_to_bf16(f);
}
template <>
inline f16 narrow<f16>(float f) {
  return float_to_f16(f);
}

// The value a float32 takes after a round trip through H.
template <typename H>
float round_to(float f) {
  return widen(narrow<H>(f));
}

}  // namespace dp
