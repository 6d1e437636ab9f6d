// The bf16 mixed-precision entry points of runtime/ops/device_ops.h (dp::gpu::gemm_bf16,
// f32_to_bf16, bf16_to_f32, relu_forward_bf16, relu_backward_bf16, col_sum_accumulate_bf16)
// against their CPU twins in runtime/ops/cpu/bf16_ops.h, on fresh random non-zero inputs at
// odd sizes, with guard zones around every output.
//
// The dp::gpu functions enqueue on compute_stream(0), not on the fixture's stream: inputs are
// uploaded (and synchronised) on the fixture's stream before a call, and compute_stream(0) is
// synchronised before anything is read back.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/core/bf16.h"
#include "runtime/core/cuda/context.h"
#include "runtime/ops/cpu/bf16_ops.h"
#include "runtime/ops/cuda/blas.h"
#include "runtime/ops/device_ops.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/support/float_bits.h"
#include "tests/support/gemm_case.h"

using namespace dp;
using dp::test::bits_of;
using dp::test::from_bits;
using namespace dp::gpu_test;

namespace {

bool is_nan(bf16 h) {
  return (h.bits & 0x7f80u) == 0x7f80u && (h.bits & 0x007fu) != 0;
}

// Host-side bf16 arrays through the CPU conversion (the reference itself).
std::vector<bf16> host_bf16(const std::vector<float>& f) {
  std::vector<bf16> h(f.size());
  dp::f32_to_bf16(f.size(), f.data(), h.data());
  return h;
}
std::vector<float> host_f32(const std::vector<bf16>& h) {
  std::vector<float> f(h.size());
  dp::bf16_to_f32(h.size(), h.data(), f.data());
  return f;
}

// Random non-zero bf16 values (uniform in [lo, hi), rounded).
std::vector<bf16> random_bf16(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  return host_bf16(random_floats(n, seed, lo, hi));
}

// Uniformly random 32-bit patterns as floats: every exponent (subnormals, infinities, NaNs).
std::vector<float> random_patterns(size_t n, uint64_t seed) {
  Philox rng(seed, 17);
  std::vector<float> v(n);
  for (float& x : v) x = from_bits(rng.next_u32());
  return v;
}

// Bit equality, except that a NaN only has to be a NaN: the GPU's cvt.rn.bf16.f32 gives the
// canonical NaN (0x7fff) where the CPU keeps the payload's upper bits.
::testing::AssertionResult same_bf16(const std::vector<bf16>& got, const std::vector<bf16>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  for (size_t i = 0; i < got.size(); ++i) {
    if (is_nan(want[i]) ? is_nan(got[i]) : got[i].bits == want[i].bits) continue;
    return ::testing::AssertionFailure() << "first difference at " << i << ": got 0x" << std::hex
                                         << got[i].bits << ", expected 0x" << want[i].bits;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult same_f32(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i]) ? std::isnan(got[i]) : bits_of(got[i]) == bits_of(want[i])) continue;
    return ::testing::AssertionFailure() << "first difference at " << i << ": got 0x" << std::hex
                                         << bits_of(got[i]) << ", expected 0x" << bits_of(want[i]);
  }
  return ::testing::AssertionSuccess();
}

// One unit in the last place of the bf16 value v (2^-133 for subnormals).
double bf16_ulp(double v) {
  const uint16_t h = static_cast<uint16_t>(float_to_bf16(float(std::fabs(v))).bits & 0x7fffu);
  const int e = (h >> 7) & 0xff;
  return std::ldexp(1.0, (e == 0 ? 1 : e) - 127 - 7);
}

}  // namespace

class CudaBf16Ops : public CudaTest {
 protected:
  // What the dp::gpu calls were enqueued on.
  void sync_compute() { DP_CUDA_CHECK(cudaStreamSynchronize(compute_stream(0))); }
};

// ---------------------------------------------------------------------------------------
// Conversions: bit-exact against the CPU.

TEST_F(CudaBf16Ops, F32ToBf16MatchesCpu) {
  const float specials[] = {0.0f,
                            -0.0f,
                            from_bits(0x3f808000u),  // tie: down to even
                            from_bits(0x3f818000u),  // tie: up to even
                            from_bits(0x3fff8000u),  // tie carrying into the exponent
                            from_bits(0x7f7f8000u),  // tie past the largest finite: infinity
                            std::numeric_limits<float>::max(),
                            -std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::denorm_min(),
                            from_bits(0x00018000u),  // subnormal tie
                            from_bits(0x007fffffu),  // largest subnormal: up to the smallest normal
                            -1e-40f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(),
                            from_bits(0x7f800001u),  // NaN whose payload is all dropped bits
                            from_bits(0xffffffffu)};
  for (size_t n : odd_sizes()) {
    SCOPED_TRACE(n);
    std::vector<float> x = random_floats(n, 100 + n, -1e4f, 1e4f);
    for (size_t i = 0; i < n && i < std::size(specials); ++i) x[(i * 7919) % n] = specials[i];
    std::vector<bf16> want(n);
    dp::f32_to_bf16(n, x.data(), want.data());
    DeviceBuffer<float> dx(x, stream);
    DeviceBuffer<bf16> dy(n, stream);
    gpu::f32_to_bf16(0, n, dx.get(), dy.get());
    sync_compute();
    EXPECT_TRUE(same_bf16(dy.download(), want));
    EXPECT_TRUE(dy.guards_intact());
  }
  // Random bit patterns: every exponent, sign and rounding case.
  const std::vector<float> x = random_patterns((size_t{1} << 20) + 1, 7);
  std::vector<bf16> want(x.size());
  dp::f32_to_bf16(x.size(), x.data(), want.data());
  DeviceBuffer<float> dx(x, stream);
  DeviceBuffer<bf16> dy(x.size(), stream);
  gpu::f32_to_bf16(0, x.size(), dx.get(), dy.get());
  sync_compute();
  EXPECT_TRUE(same_bf16(dy.download(), want));
  EXPECT_TRUE(dy.guards_intact());
}

TEST_F(CudaBf16Ops, Bf16ToF32MatchesCpu) {
  // All 65536 patterns, then random arrays at the odd sizes.
  std::vector<bf16> all(65536);
  for (uint32_t u = 0; u < 65536; ++u) all[u] = bf16{static_cast<uint16_t>(u)};
  std::vector<std::vector<bf16>> inputs = {all};
  for (size_t n : odd_sizes()) inputs.push_back(random_bf16(n, 200 + n, -1e3f, 1e3f));
  for (const std::vector<bf16>& x : inputs) {
    SCOPED_TRACE(x.size());
    DeviceBuffer<bf16> dx(x, stream);
    DeviceBuffer<float> dy(x.size(), stream);
    gpu::bf16_to_f32(0, x.size(), dx.get(), dy.get());
    sync_compute();
    EXPECT_TRUE(same_f32(dy.download(), host_f32(x)));
    EXPECT_TRUE(dy.guards_intact());
  }
}

// ---------------------------------------------------------------------------------------
// ReLU: exact (it only selects).

namespace {

// Random values with +-0, NaNs, infinities and subnormals mixed in.
std::vector<bf16> relu_inputs(size_t n, uint64_t seed) {
  std::vector<bf16> x = random_bf16(n, seed);
  const uint16_t specials[] = {0x0000, 0x8000, 0x7fc0, 0xffc0, 0x7f81,
                               0x7f80, 0xff80, 0x0001, 0x8001, 0x007f};
  for (size_t i = 0; i < n; i += 3) x[i] = bf16{specials[(i / 3) % 10]};
  return x;
}

::testing::AssertionResult bits_equal(const std::vector<bf16>& got, const std::vector<bf16>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i].bits != want[i].bits)
      return ::testing::AssertionFailure() << "first difference at " << i << ": got 0x" << std::hex
                                           << got[i].bits << ", expected 0x" << want[i].bits;
  return ::testing::AssertionSuccess();
}

}  // namespace

TEST_F(CudaBf16Ops, ReluForwardAndBackwardMatchCpu) {
  for (size_t n : odd_sizes()) {
    SCOPED_TRACE(n);
    const std::vector<bf16> x = relu_inputs(n, 300 + n);
    std::vector<bf16> dy = random_bf16(n, 400 + n);
    dy[0] = bf16{0x7fc0};  // a NaN gradient: kept where x passes (> 0 or NaN), dropped elsewhere
    std::vector<bf16> y(n), dx(n);
    dp::relu_forward_bf16(n, x.data(), y.data());
    dp::relu_backward_bf16(n, x.data(), dy.data(), dx.data());

    DeviceBuffer<bf16> dev_x(x, stream), dev_y(n, stream), dev_dy(dy, stream), dev_dx(n, stream);
    gpu::relu_forward_bf16(0, n, dev_x.get(), dev_y.get());
    gpu::relu_backward_bf16(0, n, dev_x.get(), dev_dy.get(), dev_dx.get());
    sync_compute();
    // Bits, NaN included: a ReLU output is a copy of an input or +0, never a computed NaN.
    EXPECT_TRUE(bits_equal(dev_y.download(), y));
    EXPECT_TRUE(bits_equal(dev_dx.download(), dx));
    EXPECT_TRUE(dev_y.guards_intact() && dev_dx.guards_intact());

    // In place, as the header allows: y = x and dx = dy.
    gpu::relu_forward_bf16(0, n, dev_x.get(), dev_x.get());
    sync_compute();
    EXPECT_TRUE(bits_equal(dev_x.download(), y));
    dev_x.upload(x);
    gpu::relu_backward_bf16(0, n, dev_x.get(), dev_dy.get(), dev_dy.get());
    sync_compute();
    EXPECT_TRUE(bits_equal(dev_dy.download(), dx));
    EXPECT_TRUE(dev_x.guards_intact() && dev_dy.guards_intact());
  }
  // Empty: nothing to launch, null pointers allowed.
  gpu::relu_forward_bf16(0, 0, nullptr, nullptr);
  gpu::relu_backward_bf16(0, 0, nullptr, nullptr, nullptr);
  sync_compute();
}

// ---------------------------------------------------------------------------------------
// Column sum of bf16 rows into float32.

TEST_F(CudaBf16Ops, ColSumAccumulateMatchesCpu) {
  for (const Shape2d& s : odd_shapes()) {
    SCOPED_TRACE(testing::Message() << s.rows << "x" << s.cols);
    const std::vector<bf16> x = random_bf16(s.rows * s.cols, 500 + s.rows, -2.0f, 2.0f);
    const std::vector<float> out0 = random_floats(s.cols, 600 + s.cols);
    std::vector<float> want = out0;
    dp::col_sum_accumulate_bf16(s.rows, s.cols, x.data(), want.data());
    // The scale of the rounding: |out| + sum |x| per column.
    std::vector<double> mag(s.cols);
    for (size_t c = 0; c < s.cols; ++c) mag[c] = std::fabs(double(out0[c]));
    for (size_t i = 0; i < x.size(); ++i) mag[i % s.cols] += std::fabs(double(bf16_to_float(x[i])));

    DeviceBuffer<bf16> dx(x, stream);
    DeviceBuffer<float> dout(out0, stream);
    gpu::col_sum_accumulate_bf16(0, s.rows, s.cols, dx.get(), dout.get());
    sync_compute();
    const std::vector<float> got = dout.download();
    // Both sum in float32, in different orders (the CPU row by row, the GPU in a fixed tree).
    size_t bad = 0;
    for (size_t c = 0; c < s.cols; ++c) {
      const double err = std::fabs(double(got[c]) - double(want[c]));
      if (!(err <= 1e-6 * mag[c]) && bad++ < 5)
        ADD_FAILURE() << "column " << c << ": got " << got[c] << ", expected " << want[c]
                      << " (tolerance " << 1e-6 * mag[c] << ")";
    }
    EXPECT_EQ(bad, 0u);
    EXPECT_TRUE(dout.guards_intact());

    // Deterministic: the same inputs give the same bits.
    dout.upload(out0);
    gpu::col_sum_accumulate_bf16(0, s.rows, s.cols, dx.get(), dout.get());
    sync_compute();
    EXPECT_TRUE(all_equal(dout.download(), got)) << "not deterministic";
  }
}

// Multiples of 1/8 with small sums are exact in float32 whatever the order: the GPU must give
// the CPU's bits, so a missed or doubled row shows without a tolerance.
TEST_F(CudaBf16Ops, ColSumAccumulateExact) {
  for (const Shape2d& s : odd_shapes()) {
    SCOPED_TRACE(testing::Message() << s.rows << "x" << s.cols);
    const std::vector<bf16> x =
        host_bf16(random_small_ints(s.rows * s.cols, 700 + s.rows, 4, 0.125f));
    std::vector<float> out = random_small_ints(s.cols, 800 + s.cols);
    DeviceBuffer<bf16> dx(x, stream);
    DeviceBuffer<float> dout(out, stream);
    gpu::col_sum_accumulate_bf16(0, s.rows, s.cols, dx.get(), dout.get());
    dp::col_sum_accumulate_bf16(s.rows, s.cols, x.data(), out.data());
    sync_compute();
    EXPECT_TRUE(all_equal(dout.download(), out));
  }
  gpu::col_sum_accumulate_bf16(0, 0, 5, nullptr, nullptr);  // nothing to add
  sync_compute();
}

// ---------------------------------------------------------------------------------------
// gemm_bf16 against the CPU gemm_bf16.

namespace {

using GemmCase = test::Bf16GemmCase;

using GemmData = test::Bf16GemmData;

GemmData make_data(const GemmCase& g, uint64_t seed, bool small_ints) {
  auto gen = [&](size_t n, uint64_t s) {
    return small_ints ? random_small_ints(n, s) : random_floats(n, s);
  };
  GemmData d;
  d.a = host_bf16(gen(size_t(g.a_rows()) * size_t(g.lda()), seed));
  d.b = host_bf16(gen(size_t(g.b_rows()) * size_t(g.ldb()), seed + 1));
  d.c_f = gen(g.c_size(), seed + 2);  // float32 C: values bf16 cannot hold, as in training
  d.c_h = host_bf16(gen(g.c_size(), seed + 3));
  d.bias_f = gen(size_t(g.n), seed + 4);
  d.bias_h = host_bf16(gen(size_t(g.n), seed + 5));
  test::poison_c_when_beta_is_zero(g, d);
  return d;
}

// The CPU result, C as floats (all ldc columns of every row).
std::vector<float> run_cpu(const GemmCase& g, const GemmData& d) {
  if (g.c_dtype == DType::f32) {
    std::vector<float> c = d.c_f;
    dp::gemm_bf16(g.ta, g.tb, g.m, g.n, g.k, g.alpha, d.a.data(), g.lda(), d.b.data(), g.ldb(),
                  g.beta, c.data(), g.ldc(), DType::f32, g.bias ? d.bias_f.data() : nullptr);
    return c;
  }
  std::vector<bf16> c = d.c_h;
  dp::gemm_bf16(g.ta, g.tb, g.m, g.n, g.k, g.alpha, d.a.data(), g.lda(), d.b.data(), g.ldb(),
                g.beta, c.data(), g.ldc(), DType::bf16, g.bias ? d.bias_h.data() : nullptr);
  return host_f32(c);
}

// |alpha| |op(A)| |op(B)| + |beta C| + |bias| per element (m x n, dense), through the CPU
// gemm_bf16 on absolute values (clearing a bf16's sign bit is exact): the scale of the
// float32 accumulation error.
std::vector<double> magnitude(const GemmCase& g, const GemmData& d) {
  auto abs_h = [](std::vector<bf16> v) {
    for (bf16& h : v) h.bits = static_cast<uint16_t>(h.bits & 0x7fffu);
    return v;
  };
  const std::vector<bf16> a = abs_h(d.a), b = abs_h(d.b);
  std::vector<float> c(g.c_size()), bias(size_t(g.n));
  const std::vector<float> c_in = g.c_dtype == DType::f32 ? d.c_f : host_f32(d.c_h);
  const std::vector<float> bias_in = g.c_dtype == DType::f32 ? d.bias_f : host_f32(d.bias_h);
  for (size_t i = 0; i < c.size(); ++i) c[i] = std::isnan(c_in[i]) ? 0.0f : std::fabs(c_in[i]);
  for (size_t j = 0; j < bias.size(); ++j) bias[j] = std::fabs(bias_in[j]);
  dp::gemm_bf16(g.ta, g.tb, g.m, g.n, g.k, std::fabs(g.alpha), a.data(), g.lda(), b.data(), g.ldb(),
                std::fabs(g.beta), c.data(), g.ldc(), DType::f32, g.bias ? bias.data() : nullptr);
  std::vector<double> mag(size_t(g.m) * size_t(g.n));
  for (int i = 0; i < g.m; ++i)
    for (int j = 0; j < g.n; ++j)
      mag[size_t(i) * size_t(g.n) + size_t(j)] = c[size_t(i) * size_t(g.ldc()) + size_t(j)];
  return mag;
}

// The GPU result through dp::gpu::gemm_bf16, C as floats; `unfused` tells whether this call
// built a plan whose bias epilogue runs as a separate kernel.
std::vector<float> run_gpu(const GemmCase& g, const GemmData& d, cudaStream_t s, bool* unfused) {
  const size_t before = cuda::blas(0).unfused_epilogue_plans();
  DeviceBuffer<bf16> a(d.a, s, g.front), b(d.b, s, g.front);
  std::vector<float> out;
  if (g.c_dtype == DType::f32) {
    DeviceBuffer<float> c(d.c_f, s, g.front), bias(d.bias_f, s, g.front);
    gpu::gemm_bf16(0, g.ta, g.tb, g.m, g.n, g.k, g.alpha, a.get(), g.lda(), b.get(), g.ldb(),
                   g.beta, c.get(), g.ldc(), DType::f32, g.bias ? bias.get() : nullptr);
    DP_CUDA_CHECK(cudaStreamSynchronize(compute_stream(0)));
    EXPECT_TRUE(c.guards_intact()) << "gemm_bf16 wrote outside C";
    EXPECT_TRUE(bias.guards_intact());
    out = c.download();
  } else {
    DeviceBuffer<bf16> c(d.c_h, s, g.front), bias(d.bias_h, s, g.front);
    gpu::gemm_bf16(0, g.ta, g.tb, g.m, g.n, g.k, g.alpha, a.get(), g.lda(), b.get(), g.ldb(),
                   g.beta, c.get(), g.ldc(), DType::bf16, g.bias ? bias.get() : nullptr);
    DP_CUDA_CHECK(cudaStreamSynchronize(compute_stream(0)));
    EXPECT_TRUE(c.guards_intact()) << "gemm_bf16 wrote outside C";
    EXPECT_TRUE(bias.guards_intact());
    out = host_f32(c.download());
  }
  EXPECT_TRUE(a.guards_intact() && b.guards_intact());
  if (unfused != nullptr) *unfused = cuda::blas(0).unfused_epilogue_plans() > before;
  return out;
}

// The m x n part within tolerance, the padding (columns n..ldc-1) exactly as it was.
//   float32 C: 1e-5 * mag (float32 accumulation in another order, tensor-core rounding).
//   bfloat16 C: one bf16 ulp (two roundings of nearly the same float32 value), plus the same
//   1e-5 * mag for where the result cancels far below the magnitude of its terms, plus 2^-8 *
//   mag where the bias epilogue ran unfused (cuda::gemm then rounds the product to bf16
//   before adding the bias: a second rounding the CPU does not do).
::testing::AssertionResult gemm_close(const GemmCase& g, const std::vector<float>& got,
                                      const std::vector<float>& want,
                                      const std::vector<float>& initial,
                                      const std::vector<double>& mag, bool unfused) {
  size_t bad = 0;
  std::string first;
  for (int i = 0; i < g.m; ++i)
    for (int j = 0; j < g.ldc(); ++j) {
      const size_t at = size_t(i) * size_t(g.ldc()) + size_t(j);
      const double gv = got[at], wv = want[at];
      if (j >= g.n) {
        if (bits_of(got[at]) != bits_of(initial[at]) && bad++ == 0)
          first = fmt::format("padding C[{}, {}] changed from {} to {}", i, j, initial[at], gv);
        continue;
      }
      const double m = mag[size_t(i) * size_t(g.n) + size_t(j)];
      double tol = 1e-5 * m + 1e-30;
      if (g.c_dtype == DType::bf16) {
        tol += std::max(bf16_ulp(gv), bf16_ulp(wv));
        if (unfused && g.bias) tol += std::ldexp(m, -8);
      }
      if (!(std::fabs(gv - wv) <= tol) && bad++ == 0)
        first = fmt::format("C[{}, {}] = {}, expected {} (tolerance {})", i, j, gv, wv, tol);
    }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " elements wrong; first: " << first;
}

struct Mnk {
  int m, n, k;
};

// Odd sizes, a 1x1x1, k = 1, skinny and wide outputs, and the MLP's first layer (64, 784 ->
// 256). k = 0 takes cuda::gemm's epilogue-only path.
const std::vector<Mnk> kShapes = {{1, 1, 1},      {7, 5, 11},  {37, 61, 129},  {64, 33, 1},
                                  {1000, 10, 33}, {5, 257, 3}, {64, 256, 784}, {9, 13, 0}};

using Param = std::tuple<bool, bool>;

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  return std::string(std::get<0>(info.param) ? "T" : "N") + (std::get<1>(info.param) ? "T" : "N");
}

}  // namespace

class CudaBf16Gemm : public CudaTest, public ::testing::WithParamInterface<Param> {};

// Random values: every shape x C float32/bfloat16 x bias or not x tight/padded leading
// dimensions x beta 0/1. beta is innermost: both betas share one plan (beta is not part of
// the plan key), so the first call of each key is the one that reports an unfused epilogue.
TEST_P(CudaBf16Gemm, MatchesCpu) {
  const auto [ta, tb] = GetParam();
  uint64_t seed = 1000;
  for (const Mnk& s : kShapes)
    for (DType c_dtype : {DType::f32, DType::bf16})
      for (bool bias : {false, true})
        for (int pad : {0, 3}) {
          bool unfused = false;
          for (float beta : {0.0f, 1.0f}) {
            GemmCase g;
            g.ta = ta, g.tb = tb, g.m = s.m, g.n = s.n, g.k = s.k, g.alpha = 0.75f, g.beta = beta;
            g.c_dtype = c_dtype, g.bias = bias, g.pad = pad;
            SCOPED_TRACE(g.str());
            const GemmData d = make_data(g, seed += 10, false);
            const std::vector<float> want = run_cpu(g, d);
            bool now = false;
            const std::vector<float> got = run_gpu(g, d, stream, &now);
            unfused = unfused || now;
            const std::vector<float> initial = c_dtype == DType::f32 ? d.c_f : host_f32(d.c_h);
            ASSERT_TRUE(gemm_close(g, got, want, initial, magnitude(g, d), unfused));
          }
        }
}

// Small integers: products and sums exact in float32 and results exact in bf16 (|C| <= 16 k
// + 8 < 256 for these k), so any correct GEMM gives the CPU's bits, fused bias or not. With
// every pointer only element-aligned too (front = 1), which forces the unfused epilogue.
TEST_P(CudaBf16Gemm, ExactOnSmallIntegers) {
  const auto [ta, tb] = GetParam();
  uint64_t seed = 5000;
  for (const Mnk& s : std::vector<Mnk>{{1, 1, 1}, {7, 5, 11}, {33, 17, 15}, {37, 61, 13}})
    for (DType c_dtype : {DType::f32, DType::bf16})
      for (bool bias : {false, true})
        for (float beta : {0.0f, 1.0f})
          for (size_t front : {size_t{0}, size_t{1}}) {
            GemmCase g;
            g.ta = ta, g.tb = tb, g.m = s.m, g.n = s.n, g.k = s.k, g.alpha = 1.0f, g.beta = beta;
            g.c_dtype = c_dtype, g.bias = bias, g.pad = 1, g.front = front;
            SCOPED_TRACE(g.str());
            const GemmData d = make_data(g, seed += 10, true);
            ASSERT_TRUE(all_equal(run_gpu(g, d, stream, nullptr), run_cpu(g, d)));
          }
}

INSTANTIATE_TEST_SUITE_P(AllTransposes, CudaBf16Gemm,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()), param_name);

TEST_F(CudaBf16Ops, GemmEdgeCases) {
  // m = 0 or n = 0: a no-op that touches nothing, not even the (null) pointers.
  gpu::gemm_bf16(0, false, false, 0, 5, 3, 1.0f, nullptr, 3, nullptr, 5, 0.0f, nullptr, 5,
                 DType::bf16, nullptr);
  gpu::gemm_bf16(0, false, false, 5, 0, 3, 1.0f, nullptr, 3, nullptr, 1, 0.0f, nullptr, 1,
                 DType::f32, nullptr);
  sync_compute();
  // C must be float32 or bfloat16.
  DeviceBuffer<bf16> a(16, stream), b(16, stream);
  DeviceBuffer<int32_t> c(16, stream);
  EXPECT_THROW(gpu::gemm_bf16(0, false, false, 4, 4, 4, 1.0f, a.get(), 4, b.get(), 4, 0.0f, c.get(),
                              4, DType::i32, nullptr),
               dp::Error);
  // A leading dimension too small for the operand.
  EXPECT_THROW(gpu::gemm_bf16(0, false, false, 4, 4, 4, 1.0f, a.get(), 3, b.get(), 4, 0.0f, c.get(),
                              4, DType::f32, nullptr),
               dp::Error);
  EXPECT_TRUE(c.guards_intact());
}
