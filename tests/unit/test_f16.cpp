// IEEE half (float16) on the host: runtime/core/f16.h's scalar conversions, checked
// exhaustively (every half round-trips; float_to_f16 agrees with the x86 F16C instruction
// bit for bit on millions of random float32 patterns and on every rounding boundary), the
// CPU array conversions and cast_into.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/half_float.h"
#include "runtime/core/tensor.h"
#include "runtime/ops/cast.h"
#include "runtime/ops/cpu/f16_ops.h"
#include "tests/support/float_bits.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define DPRUN_HAVE_X86 1
#endif

using namespace dp;

namespace {

using test::bits_of;
using test::from_bits;

#ifdef DPRUN_HAVE_X86
// The hardware's conversion: vcvtps2ph, round to nearest even.
__attribute__((target("f16c"))) uint16_t f16c(float x) {
  return static_cast<uint16_t>(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT));
}

// CPUID itself: clang before 16 (the sanitizer builds) does not know "f16c" as a
// __builtin_cpu_supports feature.
bool have_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
#else
uint16_t f16c(float) {
  return 0;
}
bool have_f16c() {
  return false;
}
#endif

// Counts the patterns where float_to_f16 and F16C differ, reporting the first.
struct Mismatches {
  size_t count = 0;
  uint32_t first = 0;
  void check(uint32_t u) {
    const float x = from_bits(u);
    if (float_to_f16(x).bits != f16c(x) && count++ == 0) first = u;
  }
  void expect_none(const char* what) const {
    EXPECT_EQ(count, 0u) << what << ": first float bits 0x" << std::hex << first << " gave 0x"
                         << float_to_f16(from_bits(first)).bits << ", F16C 0x"
                         << f16c(from_bits(first));
  }
};

}  // namespace

TEST(F16, DTypeIsTwoBytesNamedFloat16) {
  EXPECT_EQ(dtype_size(DType::f16), 2u);
  EXPECT_STREQ(dtype_name(DType::f16), "float16");
  EXPECT_TRUE(is_half_float(DType::f16));
  EXPECT_TRUE(is_half_float(DType::bf16));
  EXPECT_FALSE(is_half_float(DType::f32));
  EXPECT_EQ(Tensor::zeros({3}, DType::f16).str(), "float16[3]");
}

TEST(F16, KnownValues) {
  EXPECT_EQ(float_to_f16(0.0f).bits, 0x0000u);
  EXPECT_EQ(float_to_f16(-0.0f).bits, 0x8000u);
  EXPECT_EQ(float_to_f16(1.0f).bits, 0x3c00u);
  EXPECT_EQ(float_to_f16(-2.0f).bits, 0xc000u);
  EXPECT_EQ(float_to_f16(65504.0f).bits, 0x7bffu);
  EXPECT_EQ(float_to_f16(65519.99f).bits, 0x7bffu);  // below the halfway point
  EXPECT_EQ(float_to_f16(65520.0f).bits, 0x7c00u);   // the tie rounds to even: infinity
  EXPECT_EQ(float_to_f16(-1e6f).bits, 0xfc00u);
  EXPECT_EQ(float_to_f16(std::numeric_limits<float>::infinity()).bits, 0x7c00u);
  EXPECT_EQ(float_to_f16(0x1p-14f).bits, 0x0400u);  // smallest normal
  EXPECT_EQ(float_to_f16(0x1p-24f).bits, 0x0001u);  // smallest subnormal
  EXPECT_EQ(float_to_f16(0x1p-25f).bits, 0x0000u);  // the tie below it: to even, zero
  EXPECT_EQ(float_to_f16(0x1.000002p-25f).bits, 0x0001u);
  EXPECT_EQ(float_to_f16(-0x1.8p-24f).bits, 0x8002u);    // 1.5 units: tie to even 2
  EXPECT_EQ(float_to_f16(0x1.002p0f).bits, 0x3c00u);     // 1 + 2^-11: tie to even 1
  EXPECT_EQ(float_to_f16(0x1.006p0f).bits, 0x3c02u);     // 1 + 3*2^-11: tie up to even
  EXPECT_EQ(float_to_f16(0x1.002002p0f).bits, 0x3c01u);  // just above the tie: up
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(std::nanf("")))));
  EXPECT_EQ(f16_to_float(f16{0x7bff}), 65504.0f);
  EXPECT_EQ(f16_to_float(f16{0x0001}), 0x1p-24f);
  EXPECT_EQ(f16_to_float(f16{0x83ff}), -0x3ffp-24f);
  EXPECT_EQ(f16_to_float(f16{0xfc00}), -std::numeric_limits<float>::infinity());
}

TEST(F16, EveryHalfRoundTripsExactly) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const f16 x{static_cast<uint16_t>(h)};
    const float f = f16_to_float(x);
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0) {  // NaN
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      // Sign and payload kept; a signalling NaN comes back quiet.
      ASSERT_EQ(float_to_f16(f).bits, x.bits | 0x0200u) << std::hex << h;
    } else {
      ASSERT_EQ(float_to_f16(f).bits, x.bits) << std::hex << h;
      // The value itself: (-1)^s * 2^(e-15) * 1.m, or 2^-14 * 0.m.
      const int e = (h >> 10) & 0x1f;
      const float m = float(h & 0x3ff);
      const float mag = e == 0x1f ? std::numeric_limits<float>::infinity()
                        : e == 0  ? std::ldexp(m, -24)
                                  : std::ldexp(1024.0f + m, e - 25);
      ASSERT_EQ(bits_of(f), bits_of((h & 0x8000u) ? -mag : mag)) << std::hex << h;
    }
  }
}

TEST(F16, MatchesF16cOnRandomPatterns) {
  if (!have_f16c()) GTEST_SKIP() << "this CPU has no F16C instruction";
  std::mt19937 rng(20240601);
  Mismatches m;
  for (int i = 0; i < 4'000'000; ++i) m.check(static_cast<uint32_t>(rng()));
  // And random values in half's own range, where most of the rounding happens.
  std::uniform_int_distribution<uint32_t> in_range(0x33000000u, 0x47800000u);
  for (int i = 0; i < 4'000'000; ++i) m.check(in_range(rng) | (i & 1 ? 0x80000000u : 0u));
  m.expect_none("random float32 patterns");
}

TEST(F16, MatchesF16cOnEveryTieAndBoundary) {
  if (!have_f16c()) GTEST_SKIP() << "this CPU has no F16C instruction";
  Mismatches m;
  // For every non-negative half h and its successor: the midpoint (the tie), and the
  // float32 values right around the midpoint and around h itself, both signs.
  for (uint32_t h = 0; h < 0x7c00u; ++h) {
    const float lo = f16_to_float(f16{static_cast<uint16_t>(h)});
    const float hi = h + 1 == 0x7c00u ? 65536.0f : f16_to_float(f16{static_cast<uint16_t>(h + 1)});
    const float mid = lo + (hi - lo) / 2;  // exact: one more bit than half's precision
    for (float c : {mid, lo}) {
      const uint32_t u = bits_of(c);
      for (uint32_t d = 0; d <= 2; ++d) {
        for (uint32_t s : {0u, 0x80000000u}) {
          m.check((u + d) | s);
          if (u >= d) m.check((u - d) | s);
        }
      }
    }
  }
  // Every float32 exponent's boundaries (zero, denormals, the largest finite, infinities,
  // NaNs), both signs.
  for (uint32_t e = 0; e < 256; ++e) {
    for (uint32_t mant : {0u, 1u, 0x1000u, 0xfffu, 0x1fffu, 0x2000u, 0x400000u, 0x7fffffu}) {
      m.check((e << 23) | mant);
      m.check(0x80000000u | (e << 23) | mant);
    }
  }
  m.expect_none("ties and boundaries");
}

TEST(F16, ArrayConversionsAndCastInto) {
  const std::vector<float> v = {0.0f,
                                -0.0f,
                                1.0f,
                                0x1.002p0f,
                                65504.0f,
                                70000.0f,
                                -70000.0f,
                                1e-8f,
                                -3e-6f,
                                3.14159f,
                                std::numeric_limits<float>::infinity()};
  const size_t n = v.size();
  std::vector<f16> h(n);
  f32_to_f16(n, v.data(), h.data());
  std::vector<float> back(n);
  f16_to_f32(n, h.data(), back.data());
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(h[i].bits, float_to_f16(v[i]).bits) << i;
    EXPECT_EQ(bits_of(back[i]), bits_of(round_to<f16>(v[i]))) << i;
  }
  EXPECT_TRUE(std::isinf(back[5]) && back[5] > 0);  // past 65504: infinity, as the cast does
  EXPECT_TRUE(std::isinf(back[6]) && back[6] < 0);
  f32_to_f16(0, nullptr, nullptr);
  f16_to_f32(0, nullptr, nullptr);

  Tensor f = Tensor::from_vector({int64_t(n)}, v);
  Tensor w = Tensor::zeros({int64_t(n)}, DType::f16);
  cast_into(f, w);
  Tensor g = Tensor::zeros({int64_t(n)});
  cast_into(w, g);
  const std::vector<float> widened = w.to_vector();
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(w.data<f16>()[i].bits, h[i].bits) << i;
    EXPECT_EQ(bits_of(g.f32()[i]), bits_of(back[i])) << i;
    EXPECT_EQ(bits_of(widened[i]), bits_of(back[i])) << i;
  }
  Tensor b = Tensor::zeros({int64_t(n)}, DType::bf16);
  EXPECT_THROW(cast_into(w, b), Error);  // no direct float16 <-> bfloat16
  Tensor short_wire = Tensor::zeros({3}, DType::f16);
  EXPECT_THROW(cast_into(f, short_wire), Error);
}
