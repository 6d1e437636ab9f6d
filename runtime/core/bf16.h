#pragma once
// Scalar float32 <-> bfloat16 conversions on the host, bit-for-bit what the GPU does
// (__float2bfloat16_rn / __bfloat162float) and what PyTorch's .to(torch.bfloat16) does for
// every number: round to nearest, ties to even; bf16 -> f32 is exact. A NaN stays a quiet
// NaN with its sign and upper payload bits (the GPU returns the canonical 0x7FFF instead:
// compare NaNs as NaNs, not as bits).
#include <cstdint>
#include <cstring>

#include "runtime/core/dtype.h"

namespace dp {

inline bf16 float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<uint16_t>((u >> 16) | 0x0040u)};
  // Adding 0x7fff plus the lowest kept bit rounds the upper half to nearest, ties to even;
  // a carry out of the mantissa correctly bumps the exponent (up to infinity).
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>(u >> 16)};
}

inline float bf16_to_float(bf16 h) {
  const uint32_t u = static_cast<uint32_t>(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// The value a float32 takes after a round trip through bfloat16.
inline float round_to_bf16(float f) {
  return bf16_to_float(float_to_bf16(f));
}

}  // namespace dp
