// The CPU kernels of bf16 mixed precision (runtime/ops/cpu/bf16_ops.h) and the scalar
// conversions under them (runtime/core/bf16.h), against independent references: rounding
// decided from the exact values of the two bf16 neighbours, and the GEMM, ReLU and column sum
// computed in double from the same bf16-rounded inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/core/bf16.h"
#include "runtime/core/device.h"
#include "runtime/core/error.h"
#include "runtime/core/rng.h"
#include "runtime/ops/cpu/bf16_ops.h"
#include "runtime/ops/cpu/gemm.h"
#include "runtime/ops/device_ops.h"
#include "tests/support/float_bits.h"
#include "tests/support/gemm_case.h"

using namespace dp;
using dp::test::bits_of;
using dp::test::from_bits;

namespace {

uint16_t to_bits(float f) {
  return float_to_bf16(f).bits;
}
bool is_nan_bf16(bf16 h) {
  return (h.bits & 0x7f80u) == 0x7f80u && (h.bits & 0x007fu) != 0;
}

// Round to nearest, ties to even, decided from exact values: the two bf16 candidates are the
// truncation of |f| and the next magnitude up (2^128 past the largest finite bf16, i.e.
// infinity), both exact in double. Independent of the bit trick in float_to_bf16.
uint16_t reference_round(float f) {
  const uint32_t u = bits_of(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t mag = u & 0x7fffffffu;
  if (mag >= 0x7f800000u) return static_cast<uint16_t>(u >> 16);  // +-inf (no NaN here)
  const uint16_t lo = static_cast<uint16_t>(mag >> 16), hi = static_cast<uint16_t>(lo + 1);
  const double x = std::fabs(static_cast<double>(f));
  const double vlo = static_cast<double>(from_bits(uint32_t{lo} << 16));
  const double vhi = hi == 0x7f80u ? std::ldexp(1.0, 128) : double(from_bits(uint32_t{hi} << 16));
  uint16_t r;
  if (x - vlo < vhi - x)
    r = lo;
  else if (x - vlo > vhi - x)
    r = hi;
  else
    r = (lo & 1u) == 0 ? lo : hi;
  return static_cast<uint16_t>(sign | r);
}

// The distance from |v| (a bf16 value) to the next bf16 magnitude up: one unit in the last
// place of an 8-bit significand (2^-133 for subnormals).
double bf16_ulp(double v) {
  const uint16_t h = static_cast<uint16_t>(to_bits(static_cast<float>(std::fabs(v))) & 0x7fffu);
  const int e = (h >> 7) & 0xff;
  return std::ldexp(1.0, (e == 0 ? 1 : e) - 127 - 7);
}

std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Philox rng(seed, 3);
  std::vector<float> v(n);
  for (float& x : v) {
    x = lo + (hi - lo) * rng.uniform();
    if (x == 0.0f) x = 0.5f * hi;
  }
  return v;
}

// Random non-zero values that bf16 holds exactly (rounding never makes one 0 here: the
// smallest magnitude of random_floats is 2^-24, far above bf16's subnormals).
std::vector<bf16> random_bf16(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  const std::vector<float> f = random_floats(n, seed, lo, hi);
  std::vector<bf16> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = float_to_bf16(f[i]);
  return h;
}

double to_double(bf16 h) {
  return static_cast<double>(bf16_to_float(h));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Scalar conversions.

TEST(Bf16Convert, ExactValuesAndSignedZeros) {
  EXPECT_EQ(to_bits(1.0f), 0x3f80u);
  EXPECT_EQ(to_bits(-2.0f), 0xc000u);
  EXPECT_EQ(to_bits(0.5f), 0x3f00u);
  EXPECT_EQ(to_bits(0.0f), 0x0000u);
  EXPECT_EQ(to_bits(-0.0f), 0x8000u);
  EXPECT_TRUE(std::signbit(bf16_to_float(float_to_bf16(-0.0f))));
  EXPECT_EQ(to_bits(std::numeric_limits<float>::infinity()), 0x7f80u);
  EXPECT_EQ(to_bits(-std::numeric_limits<float>::infinity()), 0xff80u);
}

TEST(Bf16Convert, RoundsToNearestTiesToEven) {
  // 1 + 2^-8 is halfway between 1 (0x3f80, even) and 1 + 2^-7 (0x3f81): down to even.
  EXPECT_EQ(to_bits(from_bits(0x3f808000u)), 0x3f80u);
  // 1 + 3 * 2^-8 is halfway between 0x3f81 and 0x3f82 (even): up.
  EXPECT_EQ(to_bits(from_bits(0x3f818000u)), 0x3f82u);
  // Either side of a tie goes to the nearer neighbour.
  EXPECT_EQ(to_bits(from_bits(0x3f807fffu)), 0x3f80u);
  EXPECT_EQ(to_bits(from_bits(0x3f808001u)), 0x3f81u);
  EXPECT_EQ(to_bits(from_bits(0x3f81ffffu)), 0x3f82u);
  // The same on the negative side (the magnitude is rounded).
  EXPECT_EQ(to_bits(from_bits(0xbf808000u)), 0xbf80u);
  EXPECT_EQ(to_bits(from_bits(0xbf818000u)), 0xbf82u);
  EXPECT_EQ(to_bits(from_bits(0xbf808001u)), 0xbf81u);
}

TEST(Bf16Convert, CarryIntoTheExponent) {
  // 0x3fff8000: a tie whose lower neighbour 0x3fff is odd: up to 0x4000 = 2.0.
  EXPECT_EQ(to_bits(from_bits(0x3fff8000u)), 0x4000u);
  EXPECT_EQ(bf16_to_float(float_to_bf16(from_bits(0x3fffc000u))), 2.0f);
  // Just below the tie it stays in the lower binade.
  EXPECT_EQ(to_bits(from_bits(0x3fff7fffu)), 0x3fffu);
  EXPECT_EQ(to_bits(from_bits(0xbfff8000u)), 0xc000u);
}

TEST(Bf16Convert, OverflowsToInfinity) {
  const float max = std::numeric_limits<float>::max();  // 0x7f7fffff
  EXPECT_EQ(to_bits(max), 0x7f80u);
  EXPECT_EQ(to_bits(-max), 0xff80u);
  // The largest finite bf16 is 0x7f7f; below its upper tie it stays finite, at the tie
  // (0x7f7f is odd) it rounds up to infinity.
  EXPECT_EQ(to_bits(from_bits(0x7f7f0000u)), 0x7f7fu);
  EXPECT_EQ(to_bits(from_bits(0x7f7f7fffu)), 0x7f7fu);
  EXPECT_EQ(to_bits(from_bits(0x7f7f8000u)), 0x7f80u);
  EXPECT_EQ(to_bits(3.4e38f), 0x7f80u);  // 0x7f7fc99e: above the tie
  EXPECT_TRUE(std::isinf(bf16_to_float(float_to_bf16(-3.4e38f))));
  EXPECT_EQ(to_bits(3.39e38f), 0x7f7fu);  // 0x7f7f0906: the largest finite bf16
  EXPECT_EQ(to_bits(3.0e38f), 0x7f62u);   // 0x7f61b1e6: large but representable
}

TEST(Bf16Convert, NanStaysNan) {
  // Quiet and signalling NaNs, payloads only in the bits that are dropped, the all-ones
  // payload (0x7fffffff + rounding would carry into the sign bit) and negative NaNs: each
  // must stay a NaN, never become an infinity or a zero.
  for (uint32_t u : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7f80ffffu, 0x7fffffffu,
                     0xffffffffu, 0x7fbfffffu, 0x7f808000u}) {
    SCOPED_TRACE(testing::Message() << std::hex << u);
    const bf16 h = float_to_bf16(from_bits(u));
    EXPECT_TRUE(is_nan_bf16(h)) << std::hex << h.bits;
    EXPECT_TRUE(std::isnan(bf16_to_float(h)));
    EXPECT_EQ(h.bits & 0x8000u, (u >> 16) & 0x8000u) << "sign";
  }
  EXPECT_TRUE(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
}

TEST(Bf16Convert, Subnormals) {
  // float subnormals below bf16's smallest subnormal (2^-133 = 0x0001) round to +-0 or to it.
  EXPECT_EQ(to_bits(std::numeric_limits<float>::denorm_min()), 0x0000u);  // 0x00000001
  EXPECT_EQ(to_bits(from_bits(0x00008000u)), 0x0000u);                    // tie, 0 is even
  EXPECT_EQ(to_bits(from_bits(0x00008001u)), 0x0001u);
  EXPECT_EQ(to_bits(from_bits(0x00010000u)), 0x0001u);  // exactly bf16's smallest subnormal
  EXPECT_EQ(to_bits(from_bits(0x00018000u)), 0x0002u);  // tie, 0x0001 is odd: up
  EXPECT_EQ(to_bits(from_bits(0x80008001u)), 0x8001u);
  EXPECT_EQ(to_bits(-std::numeric_limits<float>::denorm_min()), 0x8000u);
  // The largest float subnormal rounds up into the smallest normal bf16 (0x0080 = 2^-126).
  EXPECT_EQ(to_bits(from_bits(0x007fffffu)), 0x0080u);
  EXPECT_EQ(to_bits(from_bits(0x007f7fffu)), 0x007fu);  // the largest bf16 subnormal
  // And they widen back exactly.
  EXPECT_EQ(bits_of(bf16_to_float(bf16{0x0001})), 0x00010000u);
  EXPECT_EQ(bits_of(bf16_to_float(bf16{0x807f})), 0x807f0000u);
}

// Every one of the 65536 patterns widens to the float with the same upper bits (exact, NaN
// payloads included), and every non-NaN one survives the round trip unchanged.
TEST(Bf16Convert, WideningIsExactAndRoundTrips) {
  for (uint32_t u = 0; u < 65536; ++u) {
    const bf16 h{static_cast<uint16_t>(u)};
    const float f = bf16_to_float(h);
    ASSERT_EQ(bits_of(f), u << 16) << std::hex << u;
    if (is_nan_bf16(h))
      ASSERT_TRUE(std::isnan(f));
    else
      ASSERT_EQ(float_to_bf16(f).bits, u) << std::hex << u;
  }
}

// Random bit patterns (every exponent, sign and low-bit combination) and the patterns around
// every tie, against the reference rounding.
TEST(Bf16Convert, MatchesReferenceRounding) {
  Philox rng(2024, 5);
  auto check = [](uint32_t u) {
    const float f = from_bits(u);
    if (std::isnan(f)) return;
    ASSERT_EQ(to_bits(f), reference_round(f)) << std::hex << u;
  };
  for (int i = 0; i < 1000000; ++i) check(rng.next_u32());
  for (uint32_t hi = 0; hi < 65536; ++hi)
    for (uint32_t low : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu})
      check(hi << 16 | low);
}

// ---------------------------------------------------------------------------------------
// Array conversions.

TEST(Bf16Arrays, ConvertElementByElement) {
  std::vector<float> x = random_floats(1001, 1, -1e4f, 1e4f);
  const float specials[] = {0.0f,
                            -0.0f,
                            from_bits(0x3f808000u),
                            from_bits(0x3fff8000u),
                            std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::denorm_min(),
                            from_bits(0x00018000u),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN()};
  x.insert(x.begin() + 500, std::begin(specials), std::end(specials));
  const size_t n = x.size();
  std::vector<bf16> h(n, bf16{0x1234});
  f32_to_bf16(n, x.data(), h.data());
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(x[i]))
      EXPECT_TRUE(is_nan_bf16(h[i])) << i;
    else
      EXPECT_EQ(h[i].bits, reference_round(x[i])) << "x[" << i << "] = " << x[i];
  }
  std::vector<float> back(n, -7.0f);
  bf16_to_f32(n, h.data(), back.data());
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(bits_of(back[i]), uint32_t{h[i].bits} << 16) << i;

  // Only the first n elements are written.
  std::vector<bf16> part(10, bf16{0x1234});
  f32_to_bf16(3, x.data(), part.data());
  EXPECT_EQ(part[3].bits, 0x1234u);
  std::vector<float> fpart(10, -7.0f);
  bf16_to_f32(3, part.data(), fpart.data());
  EXPECT_EQ(fpart[3], -7.0f);
  // n = 0 touches nothing.
  f32_to_bf16(0, nullptr, nullptr);
  bf16_to_f32(0, nullptr, nullptr);
}

// ---------------------------------------------------------------------------------------
// gemm_bf16 against a double-precision GEMM of the same bf16 inputs.

namespace {

using GemmCase = test::Bf16GemmCase;

// Every value exactly representable in bf16.
using GemmData = test::Bf16GemmData;

GemmData make_data(const GemmCase& g, uint64_t seed) {
  GemmData d;
  d.a = random_bf16(size_t(g.a_rows()) * size_t(g.lda()), seed);
  d.b = random_bf16(size_t(g.b_rows()) * size_t(g.ldb()), seed + 1);
  d.c_h = random_bf16(size_t(g.m) * size_t(g.ldc()), seed + 2, -2.0f, 2.0f);
  d.bias_h = random_bf16(size_t(g.n), seed + 3);
  d.c_f.resize(d.c_h.size());
  bf16_to_f32(d.c_h.size(), d.c_h.data(), d.c_f.data());
  // A float32 C and bias get values bf16 cannot hold: they are float32 in the real step.
  const std::vector<float> jitter = random_floats(d.c_f.size() + size_t(g.n), seed + 4);
  for (size_t i = 0; i < d.c_f.size(); ++i) d.c_f[i] += 1e-3f * jitter[i];
  d.bias_f.resize(size_t(g.n));
  for (size_t j = 0; j < size_t(g.n); ++j)
    d.bias_f[j] = bf16_to_float(d.bias_h[j]) + 1e-3f * jitter[d.c_f.size() + j];
  test::poison_c_when_beta_is_zero(g, d);
  return d;
}

struct Reference {
  std::vector<double> value;  // alpha op(A) op(B) + beta C + bias, exact up to double rounding
  std::vector<double> mag;    // |alpha| sum |a b| + |beta C| + |bias|: the scale of the rounding
};

Reference reference(const GemmCase& g, const GemmData& d) {
  Reference r;
  const size_t cells = size_t(g.m) * size_t(g.n);
  r.value.assign(cells, 0.0);
  r.mag.assign(cells, 0.0);
  const bool f32 = g.c_dtype == DType::f32;
  for (int i = 0; i < g.m; ++i)
    for (int j = 0; j < g.n; ++j) {
      double s = 0, sa = 0;
      for (int p = 0; p < g.k; ++p) {
        const double av = to_double(g.ta ? d.a[size_t(p) * size_t(g.lda()) + size_t(i)]
                                         : d.a[size_t(i) * size_t(g.lda()) + size_t(p)]);
        const double bv = to_double(g.tb ? d.b[size_t(j) * size_t(g.ldb()) + size_t(p)]
                                         : d.b[size_t(p) * size_t(g.ldb()) + size_t(j)]);
        s += av * bv;  // exact: a product of two bf16 fits in 16 bits of significand
        sa += std::fabs(av * bv);
      }
      double v = double(g.alpha) * s, mag = std::fabs(double(g.alpha)) * sa;
      if (g.beta != 0.0f) {
        const size_t at = size_t(i) * size_t(g.ldc()) + size_t(j);
        const double c = f32 ? double(d.c_f[at]) : to_double(d.c_h[at]);
        v += double(g.beta) * c;
        mag += std::fabs(double(g.beta) * c);
      }
      if (g.bias) {
        const double b = f32 ? double(d.bias_f[size_t(j)]) : to_double(d.bias_h[size_t(j)]);
        v += b;
        mag += std::fabs(b);
      }
      r.value[size_t(i) * size_t(g.n) + size_t(j)] = v;
      r.mag[size_t(i) * size_t(g.n) + size_t(j)] = mag;
    }
  return r;
}

// float32 accumulation in any order is within a small multiple of 2^-24 * mag of the exact
// sum for these k; 1e-5 * mag leaves room for k up to a few hundred in the worst case.
constexpr double kF32RelToMag = 1e-5;

// Runs the CPU gemm_bf16 and checks C (m x n against the reference, the padding untouched).
void run_and_check(const GemmCase& g, const GemmData& d) {
  SCOPED_TRACE(g.str());
  const Reference ref = reference(g, d);
  const int ldc = g.ldc();
  auto padding_ok = [&](auto& got, auto& orig, auto bits) {
    for (int i = 0; i < g.m; ++i)
      for (int j = g.n; j < ldc; ++j) {
        const size_t at = size_t(i) * size_t(ldc) + size_t(j);
        if (bits(got[at]) != bits(orig[at])) return false;
      }
    return true;
  };
  if (g.c_dtype == DType::f32) {
    std::vector<float> c = d.c_f;
    gemm_bf16(g.ta, g.tb, g.m, g.n, g.k, g.alpha, d.a.data(), g.lda(), d.b.data(), g.ldb(), g.beta,
              c.data(), ldc, DType::f32, g.bias ? d.bias_f.data() : nullptr);
    size_t bad = 0;
    for (int i = 0; i < g.m; ++i)
      for (int j = 0; j < g.n; ++j) {
        const size_t at = size_t(i) * size_t(g.n) + size_t(j);
        const double got = c[size_t(i) * size_t(ldc) + size_t(j)], want = ref.value[at];
        const double tol = kF32RelToMag * ref.mag[at] + 1e-30;
        if (!(std::fabs(got - want) <= tol) && bad++ < 5)
          ADD_FAILURE() << "C[" << i << ", " << j << "] = " << got << ", expected " << want
                        << " (tolerance " << tol << ")";
      }
    EXPECT_EQ(bad, 0u);
    EXPECT_TRUE(padding_ok(c, d.c_f, bits_of)) << "gemm_bf16 wrote into C's padding";
    return;
  }
  std::vector<bf16> c = d.c_h;
  gemm_bf16(g.ta, g.tb, g.m, g.n, g.k, g.alpha, d.a.data(), g.lda(), d.b.data(), g.ldb(), g.beta,
            c.data(), ldc, DType::bf16, g.bias ? d.bias_h.data() : nullptr);
  size_t bad = 0;
  for (int i = 0; i < g.m; ++i)
    for (int j = 0; j < g.n; ++j) {
      const size_t at = size_t(i) * size_t(g.n) + size_t(j);
      const bf16 got_h = c[size_t(i) * size_t(ldc) + size_t(j)];
      const double got = to_double(got_h);
      // The exact result rounded to bf16 (through float: the double -> float step cannot
      // move it by more than the ulp allowed below).
      const double want = round_to_bf16(static_cast<float>(ref.value[at]));
      // One bf16 ulp (of the larger of the two, in case they straddle a power of two), plus
      // the float32 accumulation error, which only matters where the result cancels to far
      // below the magnitude of its terms.
      const double tol = std::max(bf16_ulp(got), bf16_ulp(want)) + kF32RelToMag * ref.mag[at];
      if (!(std::fabs(got - want) <= tol) && bad++ < 5)
        ADD_FAILURE() << "C[" << i << ", " << j << "] = " << got << ", expected " << want
                      << " (exact " << ref.value[at] << ", tolerance " << tol << ")";
    }
  EXPECT_EQ(bad, 0u);
  EXPECT_TRUE(padding_ok(c, d.c_h, [](bf16 h) { return h.bits; }))
      << "gemm_bf16 wrote into C's padding";
}

struct Mnk {
  int m, n, k;
};

const std::vector<Mnk> kShapes = {{1, 1, 1},  {7, 5, 11},    {37, 61, 129}, {64, 33, 1},
                                  {3, 1, 70}, {1, 129, 257}, {16, 16, 16}};

}  // namespace

class Bf16Gemm : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(Bf16Gemm, MatchesDoubleReference) {
  const auto [ta, tb] = GetParam();
  uint64_t seed = 100;
  for (const Mnk& s : kShapes)
    for (DType c_dtype : {DType::f32, DType::bf16})
      for (float beta : {0.0f, 1.0f})
        for (bool bias : {false, true})
          for (int pad : {0, 3}) {
            GemmCase g;
            g.ta = ta, g.tb = tb, g.m = s.m, g.n = s.n, g.k = s.k;
            g.alpha = 0.75f, g.beta = beta, g.c_dtype = c_dtype, g.bias = bias, g.pad = pad;
            run_and_check(g, make_data(g, seed += 10));
          }
}

// Other alphas and betas, including a negative alpha and a beta that is neither 0 nor 1.
TEST_P(Bf16Gemm, ScalesAlphaAndBeta) {
  const auto [ta, tb] = GetParam();
  uint64_t seed = 7000;
  for (DType c_dtype : {DType::f32, DType::bf16})
    for (float alpha : {-1.5f, 1.0f})
      for (float beta : {0.5f, -2.0f}) {
        GemmCase g;
        g.ta = ta, g.tb = tb, g.m = 9, g.n = 13, g.k = 21, g.pad = 2;
        g.alpha = alpha, g.beta = beta, g.c_dtype = c_dtype, g.bias = true;
        run_and_check(g, make_data(g, seed += 10));
      }
}

// Small integers: every product and sum is exact in float32 and the result is exact in
// bf16 (|C| <= 4 * 4 * 11 + 4 + 4 < 256), so the only correct answer is the exact one. Pins
// down a transposed operand or a mixed-up stride without any tolerance.
TEST_P(Bf16Gemm, ExactOnSmallIntegers) {
  const auto [ta, tb] = GetParam();
  for (DType c_dtype : {DType::f32, DType::bf16})
    for (float beta : {0.0f, 1.0f}) {
      GemmCase g;
      g.ta = ta, g.tb = tb, g.m = 6, g.n = 10, g.k = 11, g.pad = 5;
      g.alpha = 1.0f, g.beta = beta, g.c_dtype = c_dtype, g.bias = true;
      GemmData d = make_data(g, 900);
      Philox rng(901, 9);
      auto small = [&rng] {
        const int v = static_cast<int>(rng.below(8)) - 4;
        return static_cast<float>(v >= 0 ? v + 1 : v);  // [-4, 4] without 0
      };
      for (bf16& x : d.a) x = float_to_bf16(small());
      for (bf16& x : d.b) x = float_to_bf16(small());
      for (size_t i = 0; i < d.c_h.size(); ++i) {
        if (std::isnan(d.c_f[i])) continue;
        d.c_h[i] = float_to_bf16(small());
        d.c_f[i] = bf16_to_float(d.c_h[i]);
      }
      for (size_t j = 0; j < d.bias_h.size(); ++j) {
        d.bias_h[j] = float_to_bf16(small());
        d.bias_f[j] = bf16_to_float(d.bias_h[j]);
      }
      SCOPED_TRACE(g.str());
      const Reference ref = reference(g, d);
      std::vector<float> got(size_t(g.m) * size_t(g.n));
      if (c_dtype == DType::f32) {
        std::vector<float> c = d.c_f;
        gemm_bf16(ta, tb, g.m, g.n, g.k, 1.0f, d.a.data(), g.lda(), d.b.data(), g.ldb(), beta,
                  c.data(), g.ldc(), DType::f32, d.bias_f.data());
        for (int i = 0; i < g.m; ++i)
          for (int j = 0; j < g.n; ++j)
            got[size_t(i) * size_t(g.n) + size_t(j)] = c[size_t(i) * size_t(g.ldc()) + size_t(j)];
      } else {
        std::vector<bf16> c = d.c_h;
        gemm_bf16(ta, tb, g.m, g.n, g.k, 1.0f, d.a.data(), g.lda(), d.b.data(), g.ldb(), beta,
                  c.data(), g.ldc(), DType::bf16, d.bias_h.data());
        for (int i = 0; i < g.m; ++i)
          for (int j = 0; j < g.n; ++j)
            got[size_t(i) * size_t(g.n) + size_t(j)] =
                bf16_to_float(c[size_t(i) * size_t(g.ldc()) + size_t(j)]);
      }
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(double(got[i]), ref.value[i]) << "element " << i;
    }
}

INSTANTIATE_TEST_SUITE_P(AllTransposes, Bf16Gemm,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<std::tuple<bool, bool>>& info) {
                           return std::string(std::get<0>(info.param) ? "T" : "N") +
                                  (std::get<1>(info.param) ? "T" : "N");
                         });

// k = 0: no product, C = beta C + bias (rounded once for a bf16 C).
TEST(Bf16GemmEdges, EmptyInnerDimension) {
  uint64_t seed = 500;
  for (DType c_dtype : {DType::f32, DType::bf16})
    for (float beta : {0.0f, 0.5f, 1.0f})
      for (bool bias : {false, true}) {
        GemmCase g;
        g.m = 4, g.n = 7, g.k = 0, g.pad = 1;
        g.beta = beta, g.c_dtype = c_dtype, g.bias = bias;
        run_and_check(g, make_data(g, seed += 10));
      }
}

TEST(Bf16GemmEdges, EmptyOutputIsANoOp) {
  gemm_bf16(false, false, 0, 5, 3, 1.0f, nullptr, 3, nullptr, 5, 0.0f, nullptr, 5, DType::bf16,
            nullptr);
  gemm_bf16(true, true, 5, 0, 3, 1.0f, nullptr, 5, nullptr, 3, 0.0f, nullptr, 1, DType::f32,
            nullptr);
}

TEST(Bf16GemmEdges, BadArgumentsAreErrors) {
  std::vector<bf16> a(16, bf16{0x3f80}), b(16, bf16{0x3f80});
  std::vector<int32_t> c(16, 0);
  EXPECT_THROW(gemm_bf16(false, false, 4, 4, 4, 1.0f, a.data(), 4, b.data(), 4, 0.0f, c.data(), 4,
                         DType::i32, nullptr),
               Error);
  EXPECT_THROW(gemm_bf16(false, false, -1, 4, 4, 1.0f, a.data(), 4, b.data(), 4, 0.0f, c.data(), 4,
                         DType::f32, nullptr),
               Error);
}

// ---------------------------------------------------------------------------------------
// ReLU and the column sum.

namespace {

// Random values with the cases the ReLU rule is about mixed in: +-0, NaN (both signs),
// +-infinity and subnormals.
std::vector<bf16> relu_inputs(size_t n, uint64_t seed) {
  std::vector<bf16> x = random_bf16(n, seed);
  const uint16_t specials[] = {0x0000, 0x8000, 0x7fc0, 0xffc0, 0x7f81,
                               0x7f80, 0xff80, 0x0001, 0x8001, 0x007f};
  for (size_t i = 0; i < n; i += 3) x[i] = bf16{specials[(i / 3) % 10]};
  return x;
}

// The rule in one place, torch.relu's and its threshold_backward's: x <= 0 (-0 included)
// gives +0, anything else (NaN included) keeps the value.
bool passes(bf16 h) {
  return !(bf16_to_float(h) <= 0.0f);
}

}  // namespace

TEST(Bf16Relu, ForwardAndBackward) {
  for (size_t n : {size_t{1}, size_t{7}, size_t{30}, size_t{1001}}) {
    SCOPED_TRACE(n);
    const std::vector<bf16> x = relu_inputs(n, 10 + n);
    std::vector<bf16> dy = random_bf16(n, 20 + n);
    dy[0] = bf16{0x7fc0};  // a NaN gradient passes where x passes and is dropped elsewhere
    if (n > 1) dy[1] = bf16{0xff80};

    std::vector<bf16> y(n + 1, bf16{0x1234}), dx(n + 1, bf16{0x1234});
    relu_forward_bf16(n, x.data(), y.data());
    relu_backward_bf16(n, x.data(), dy.data(), dx.data());
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(y[i].bits, passes(x[i]) ? x[i].bits : 0u) << "x bits " << std::hex << x[i].bits;
      EXPECT_EQ(dx[i].bits, passes(x[i]) ? dy[i].bits : 0u) << "x bits " << std::hex << x[i].bits;
    }
    // x[6] and x[9] are NaNs (0x7fc0, 0xffc0): kept, with their gradients.
    for (size_t i : {size_t{6}, size_t{9}}) {
      if (i >= n) continue;
      EXPECT_EQ(y[i].bits, x[i].bits) << "relu(NaN) is NaN in PyTorch";
      EXPECT_EQ(dx[i].bits, dy[i].bits);
    }
    EXPECT_EQ(y[n].bits, 0x1234u);
    EXPECT_EQ(dx[n].bits, 0x1234u);

    // In place, as the header allows: y = x, dx = dy.
    std::vector<bf16> xi = x;
    relu_forward_bf16(n, xi.data(), xi.data());
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(xi[i].bits, y[i].bits);
    relu_backward_bf16(n, x.data(), dy.data(), dy.data());
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(dy[i].bits, dx[i].bits);
  }
  relu_forward_bf16(0, nullptr, nullptr);
  relu_backward_bf16(0, nullptr, nullptr, nullptr);
}

// The rule on the bits against the float compare, for every one of the 65536 values.
TEST(Bf16Relu, EveryBitPattern) {
  std::vector<bf16> x(65536), y(65536), dy(65536, bf16{0x3f80}), dx(65536);
  for (size_t i = 0; i < x.size(); ++i) x[i] = bf16{uint16_t(i)};
  relu_forward_bf16(x.size(), x.data(), y.data());
  relu_backward_bf16(x.size(), x.data(), dy.data(), dx.data());
  int wrong = 0;
  for (size_t i = 0; i < x.size() && wrong < 5; ++i) {
    const bool ok =
        y[i].bits == (passes(x[i]) ? x[i].bits : 0u) && dx[i].bits == (passes(x[i]) ? 0x3f80u : 0u);
    if (!ok) ++wrong;
    EXPECT_TRUE(ok) << "x bits " << std::hex << x[i].bits << ": y " << y[i].bits << ", dx "
                    << dx[i].bits;
  }
}

TEST(Bf16ColSum, MatchesDoubleReference) {
  struct Shape {
    size_t rows, cols;
  };
  uint64_t seed = 300;
  for (const Shape& s :
       {Shape{1, 1}, Shape{1, 33}, Shape{33, 1}, Shape{7, 5}, Shape{1000, 10}, Shape{64, 257}}) {
    SCOPED_TRACE(testing::Message() << s.rows << "x" << s.cols);
    const std::vector<bf16> x = random_bf16(s.rows * s.cols, seed += 2, -3.0f, 3.0f);
    std::vector<float> out = random_floats(s.cols, seed + 1);
    std::vector<double> want(out.begin(), out.end()), mag(s.cols);
    for (size_t c = 0; c < s.cols; ++c) mag[c] = std::fabs(out[c]);
    for (size_t r = 0; r < s.rows; ++r)
      for (size_t c = 0; c < s.cols; ++c) {
        want[c] += to_double(x[r * s.cols + c]);
        mag[c] += std::fabs(to_double(x[r * s.cols + c]));
      }
    col_sum_accumulate_bf16(s.rows, s.cols, x.data(), out.data());
    // A float32 sum of rows + 1 terms in any order is within (rows + 1) * 2^-24 * mag of
    // the exact sum (the classic bound, to first order).
    const double gamma = double(s.rows + 1) * std::ldexp(1.0, -24) * 1.01;
    for (size_t c = 0; c < s.cols; ++c)
      ASSERT_NEAR(out[c], want[c], gamma * mag[c]) << "column " << c;
  }
  // Nothing to add: out is untouched.
  std::vector<float> out = {1.5f, -2.0f};
  col_sum_accumulate_bf16(0, 2, nullptr, out.data());
  EXPECT_EQ(out, (std::vector<float>{1.5f, -2.0f}));
}

// Multiples of 1/8 with small sums: exact in float32 in any order, so the result is too.
TEST(Bf16ColSum, ExactOnSmallValues) {
  const size_t rows = 37, cols = 11;
  Philox rng(77, 1);
  std::vector<bf16> x(rows * cols);
  std::vector<double> want(cols, 0.25);
  for (size_t i = 0; i < x.size(); ++i) {
    const float v = (static_cast<float>(rng.below(17)) - 8.0f) * 0.125f;
    x[i] = float_to_bf16(v);
    want[i % cols] += v;
  }
  std::vector<float> out(cols, 0.25f);
  col_sum_accumulate_bf16(rows, cols, x.data(), out.data());
  for (size_t c = 0; c < cols; ++c) EXPECT_EQ(double(out[c]), want[c]) << c;
}

// ---------------------------------------------------------------------------------------
// Without CUDA the dp::gpu bf16 entry points exist and throw (runtime/ops/device_ops_nocuda).

TEST(Bf16DeviceOpsFallback, ThrowsBuiltWithoutCuda) {
  if (cuda_compiled()) GTEST_SKIP() << "built with CUDA: the fallbacks are not compiled in";
  try {
    gpu::gemm_bf16(0, false, false, 1, 1, 1, 1.0f, nullptr, 1, nullptr, 1, 0.0f, nullptr, 1,
                   DType::bf16, nullptr);
    FAIL() << "expected a dp::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gpu::f32_to_bf16(0, 1, nullptr, nullptr), Error);
  EXPECT_THROW(gpu::bf16_to_f32(0, 1, nullptr, nullptr), Error);
  EXPECT_THROW(gpu::relu_forward_bf16(0, 1, nullptr, nullptr), Error);
  EXPECT_THROW(gpu::relu_backward_bf16(0, 1, nullptr, nullptr, nullptr), Error);
  EXPECT_THROW(gpu::col_sum_accumulate_bf16(0, 1, 1, nullptr, nullptr), Error);
}

namespace dp {
namespace {

// A bfloat16 C larger than the float32 scratch panel (4M floats) is computed in row panels,
// the last one a single row: bit for bit the float32 GEMM of the widened operands over the
// whole of C, plus the bias, rounded once.
TEST(Bf16GemmPanels, ABigBfloat16OutputEqualsTheWholeFloat32Gemm) {
  const int m = 700, n = 6000, k = 24;  // 4.2M outputs: panels of 699 rows and 1
  for (const bool ta : {false, true}) {
    for (const float beta : {0.0f, 1.0f}) {
      SCOPED_TRACE(std::string(ta ? "A transposed" : "A") + ", beta " + std::to_string(beta));
      Philox rng(77, ta ? 1 : 2);
      // Values whose products and sums round: a panel that summed over k in another order
      // would change bits.
      auto value = [&rng] { return float_to_bf16(float(rng.below(1u << 20)) / 3e5f - 1.7f); };
      std::vector<bf16> a(size_t(m) * k), b(size_t(k) * n), c(size_t(m) * n),
          bias(static_cast<size_t>(n));
      for (bf16& x : a) x = value();
      for (bf16& x : b) x = value();
      for (bf16& x : c) x = value();
      for (bf16& x : bias) x = value();
      auto widen = [](const std::vector<bf16>& h) {
        std::vector<float> f(h.size());
        for (size_t i = 0; i < h.size(); ++i) f[i] = bf16_to_float(h[i]);
        return f;
      };
      const std::vector<float> fa = widen(a), fb = widen(b), fbias = widen(bias);
      std::vector<float> want = widen(c);
      const int lda = ta ? m : k;
      gemm(ta, false, m, n, k, 0.75f, fa.data(), lda, fb.data(), n, beta, want.data(), n);
      gemm_bf16(ta, false, m, n, k, 0.75f, a.data(), lda, b.data(), n, beta, c.data(), n,
                DType::bf16, bias.data());
      size_t wrong = 0;
      for (size_t i = 0; i < c.size() && wrong < 5; ++i) {
        const uint16_t expect = float_to_bf16(want[i] + fbias[i % size_t(n)]).bits;
        if (c[i].bits != expect) {
          ++wrong;
          ADD_FAILURE() << "element " << i << " (row " << i / size_t(n) << "): " << std::hex
                        << c[i].bits << " != " << expect;
        }
      }
    }
  }
}

// An A of more than the 16M-float panel is widened a panel of op(A)'s rows at a time (GPT's head
// takes dL/dlogits [B*T, V] as A): rows of A, or columns when it is transposed. The float32
// GEMM of the whole widened operands, into a float32 C and a bfloat16 C, up to the last bits:
// OpenBLAS sums a panel's last rows in another tail kernel than the whole GEMM's (1 thread),
// while a panel taken from the wrong rows or columns is wrong in every bit.
TEST(Bf16GemmPanels, ABigAOperandIsWidenedInPanels) {
  const int m = 700, n = 8, k = 24000;  // 16.8M elements of A: panels of 699 rows and 1
  for (const bool ta : {false, true}) {
    SCOPED_TRACE(ta ? "A transposed" : "A");
    Philox rng(91, ta ? 1 : 2);
    auto value = [&rng] { return float_to_bf16(float(rng.below(1u << 20)) / 3e5f - 1.7f); };
    std::vector<bf16> a(size_t(m) * k), b(size_t(k) * n);
    for (bf16& x : a) x = value();
    for (bf16& x : b) x = value();
    std::vector<float> fa(a.size()), fb(b.size());
    for (size_t i = 0; i < a.size(); ++i) fa[i] = bf16_to_float(a[i]);
    for (size_t i = 0; i < b.size(); ++i) fb[i] = bf16_to_float(b[i]);
    const int lda = ta ? m : k;
    std::vector<float> want(size_t(m) * n);
    gemm(ta, false, m, n, k, 1.0f, fa.data(), lda, fb.data(), n, 0.0f, want.data(), n);
    std::vector<float> got32(want.size());
    gemm_bf16(ta, false, m, n, k, 1.0f, a.data(), lda, b.data(), n, 0.0f, got32.data(), n,
              DType::f32, nullptr);
    std::vector<bf16> got16(want.size());
    gemm_bf16(ta, false, m, n, k, 1.0f, a.data(), lda, b.data(), n, 0.0f, got16.data(), n,
              DType::bf16, nullptr);
    float scale = 0;
    for (const float w : want) scale = std::max(scale, std::fabs(w));
    const float tol32 = 1e-5f * scale;  // sums of 24000 products: float32 rounding, k-order
    size_t wrong = 0;
    for (size_t i = 0; i < want.size() && wrong < 5; ++i) {
      const float got = bf16_to_float(got16[i]);
      if (std::fabs(got32[i] - want[i]) > tol32 ||
          std::fabs(got - want[i]) > tol32 + std::fabs(want[i]) / 128) {  // + bfloat16's rounding
        ++wrong;
        ADD_FAILURE() << "element " << i << " (row " << i / size_t(n) << "): " << got32[i] << " / "
                      << bf16_to_float(got16[i]) << " != " << want[i];
      }
    }
  }
}

// With beta = 0, C is write-only (BLAS's rule): neither a NaN in C nor one left in the
// thread's float32 scratch by an earlier call may reach the result. Shapes: OpenBLAS's small
// kernel, dprun's own k = 0 loop, and the blocked driver over two panels (300 x 14000 outputs
// are more than a 16 MiB panel).
TEST(Bf16GemmPanels, BetaZeroIgnoresCAndStaleScratch) {
  const bf16 nan{0x7fc0};
  for (const auto& [m, n, k] :
       {std::tuple{3, 5, 4}, std::tuple{3, 5, 0}, std::tuple{300, 14000, 64}}) {
    SCOPED_TRACE(std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k));
    const int lda = std::max(k, 1);
    std::vector<bf16> a(size_t(m) * size_t(lda), float_to_bf16(1.0f));
    std::vector<bf16> b(size_t(lda) * size_t(n), float_to_bf16(0.5f));
    // First a call that leaves NaN in the scratch: beta = 1 over a C of NaN.
    std::vector<bf16> c(size_t(m) * size_t(n), nan);
    gemm_bf16(false, false, m, n, k, 1.0f, a.data(), lda, b.data(), n, 1.0f, c.data(), n,
              DType::bf16, nullptr);
    ASSERT_TRUE(std::isnan(bf16_to_float(c[0])));
    // Then beta = 0 over a C of NaN again: every element is k x 0.5.
    std::fill(c.begin(), c.end(), nan);
    gemm_bf16(false, false, m, n, k, 1.0f, a.data(), lda, b.data(), n, 0.0f, c.data(), n,
              DType::bf16, nullptr);
    for (size_t i = 0; i < c.size(); ++i)
      ASSERT_EQ(bf16_to_float(c[i]), 0.5f * float(k)) << "element " << i;
  }
}

}  // namespace
}  // namespace dp
