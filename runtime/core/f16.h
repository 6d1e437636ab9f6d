#pragma once
// Scalar float32 <-> IEEE half (binary16) conversions on the host, bit-for-bit what the GPU
// (__float2half_rn / __half2float), the x86 F16C instruction (vcvtps2ph with round to nearest)
// and PyTorch's .to(torch.float16) do: round to nearest, ties to even, into normals and
// subnormals alike; a magnitude that rounds past 65504 (the largest half) becomes infinity
// with its sign; a NaN stays a quiet NaN with its sign and upper payload bits. f16 -> f32 is
// exact (every half is a float32). round_to<f16> (runtime/core/half_float.h) is the round trip.
#include <cstdint>
#include <cstring>

#include "runtime/core/dtype.h"

namespace dp {

inline f16 float_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  const auto sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) {  // NaN: quieted, the upper payload bits kept
    return f16{static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu))};
  }
  // 65520 (halfway between 65504 and 2^16) and up round to infinity (ties to even: 65504's
  // mantissa is odd); infinity stays infinity.
  if (a >= 0x477ff000u) return f16{static_cast<uint16_t>(sign | 0x7c00u)};
  if (a >= 0x38800000u) {  // 2^-14 and up: a normal half
    // Rebias the exponent (127 -> 15), then round the low 13 bits away, to nearest even; a
    // carry out of the mantissa correctly bumps the exponent.
    uint32_t r = a - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    return f16{static_cast<uint16_t>(sign | (r >> 13))};
  }
  // Below 2^-14: a subnormal half m * 2^-24 (m up to 1024, which is 2^-14, the smallest
  // normal: its bits are m too). At most 2^-25 (half the smallest subnormal, a tie to the
  // even 0) rounds to zero.
  const uint32_t e = a >> 23;
  if (e < 102) return f16{sign};
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;  // value = mant * 2^(e - 150)
  const uint32_t shift = 126 - e;                     // 14..24
  const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  uint32_t m = mant >> shift;
  if (rem > half || (rem == half && (m & 1u))) ++m;
  return f16{static_cast<uint16_t>(sign | m)};
}

inline float f16_to_float(f16 h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  const uint32_t e = (h.bits >> 10) & 0x1fu, m = h.bits & 0x3ffu;
  if (e == 0) {
    const float f = static_cast<float>(m) * 0x1p-24f;  // zero or subnormal: exact
    return sign ? -f : f;
  }
  // Infinity or NaN (payload kept) from the all-ones exponent, else rebiased (15 -> 127).
  const uint32_t u = sign | (e == 0x1f ? 0x7f800000u : (e + 112u) << 23) | (m << 13);
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

}  // namespace dp
