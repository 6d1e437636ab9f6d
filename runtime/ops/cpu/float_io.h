#pragma once
// What the transformer's CPU kernels share: loads and stores of the activation element
// types (float32, bfloat16) as float32, so that each kernel is written once for both
// (bfloat16 is widened exactly and rounded once, to nearest even, when stored), and row
// reductions and an exp written so that the compiler vectorises the loops that use them.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "runtime/core/bf16.h"
#include "runtime/core/dtype.h"
#include "runtime/core/simd_clones.h"

namespace dp::cpu_io {

DP_SIMD_INLINE float load(float v) {
  return v;
}
DP_SIMD_INLINE float load(bf16 v) {
  return bf16_to_float(v);
}
DP_SIMD_INLINE void store(float& dst, float v) {
  dst = v;
}
DP_SIMD_INLINE void store(bf16& dst, float v) {
  dst = float_to_bf16(v);
}
// The same as a value, for kernels that write `y[i] = store<T>(v)`.
template <typename T>
T store(float v);
template <>
DP_SIMD_INLINE float store<float>(float v) {
  return v;
}
template <>
DP_SIMD_INLINE bf16 store<bf16>(float v) {
  return float_to_bf16(v);
}

// exp(x) for x clamped to [-80, 80], written so that loops calling it vectorise (no calls,
// no branches): GELU applies it to 4C values per token and the attention softmax to T/2 per
// score row, and libm's expf/tanhf would cost about as much per value as the GEMMs around
// them spend per output at GPT's widths. Relative error ~2e-7.
// The clamp works on the bits: GCC does not vectorise a float compare-and-select whose result
// feeds more arithmetic (it may trap, under the default -ftrapping-math), but an integer one
// it does. |x| > 80 (NaN included: its bits are above infinity's) becomes +-80, so a NaN in
// gives a finite value out; callers keep NaNs visible by other paths (GELU multiplies by x,
// the attention's input also flows through the residual stream).
DP_SIMD_INLINE float exp_clamped(float x) {
  int32_t b;
  std::memcpy(&b, &x, sizeof(b));
  constexpr int32_t kBits80 = 0x42a00000;  // 80.0f
  b = (b & 0x7fffffff) > kBits80 ? ((b & INT32_MIN) | kBits80) : b;
  std::memcpy(&x, &b, sizeof(x));
  // n = round(x / ln 2) by the 1.5 * 2^23 trick; r = x - n ln 2 in two parts (Cody-Waite).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-6f;
  const float p =
      1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 +
                                          r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, |n| <= 116
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// Sum of f(0), ..., f(n - 1) over independent lanes: breaks the add chain so that the loop
// vectorises (float addition is not associative, so the compiler may not reorder one sum by
// itself). The order depends on n alone: the same bits every run.
constexpr size_t kLanes = 16;

template <typename F>
DP_SIMD_INLINE float lane_sum(size_t n, F f) {
  float acc[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (size_t l = 0; l < kLanes; ++l) acc[l] += f(i + l);
  for (size_t l = 0; i < n; ++i, ++l) acc[l] += f(i);
  for (size_t w = kLanes / 2; w > 0; w /= 2)
    for (size_t l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// max(x[0..n-1]) for n >= 1, the same way (NaNs are not propagated: callers' inputs are
// finite or already lost).
DP_SIMD_INLINE float lane_max(size_t n, const float* x) {
  float acc[kLanes];
  for (size_t l = 0; l < kLanes; ++l) acc[l] = x[0];
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (size_t l = 0; l < kLanes; ++l) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
  for (size_t l = 0; i < n; ++i, ++l) acc[l] = x[i] > acc[l] ? x[i] : acc[l];
  for (size_t w = kLanes / 2; w > 0; w /= 2)
    for (size_t l = 0; l < w; ++l) acc[l] = acc[l + w] > acc[l] ? acc[l + w] : acc[l];
  return acc[0];
}

}  // namespace dp::cpu_io
