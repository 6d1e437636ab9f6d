// cuda::gemm (cuBLASLt) against the CPU gemm (OpenBLAS) plus the CPU bias and ReLU loops,
// for every transpose combination, dtype, epilogue, beta 0 and 1, tight and padded leading
// dimensions, odd shapes and element-aligned pointers.
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/cpu/gemm.h"
#include "runtime/ops/cuda/gemm.h"
#include "tests/gpu/gpu_test_util.h"

using namespace dp;
using namespace dp::gpu_test;
using cuda::Epilogue;
using cuda::GemmDtype;

namespace {

struct GemmCase : gpu_test::GemmGeometry {
  Epilogue epi = Epilogue::none;
  GemmDtype dtype = GemmDtype::f32;

  std::string str() const {
    return fmt::format("{} epi={} dtype={}", geometry_str(), cuda::epilogue_name(epi),
                       cuda::gemm_dtype_name(dtype));
  }
};

// Host-side inputs in float. For the bf16 dtypes they hold values bf16 represents exactly,
// so the CPU reference and the GPU see the same numbers.
struct GemmInputs {
  std::vector<float> a, b, c0, bias;
};

GemmInputs make_inputs(const GemmCase& g, uint64_t seed, bool small_ints) {
  auto gen = [&](size_t n, uint64_t s) {
    std::vector<float> v = small_ints ? random_small_ints(n, s) : random_floats(n, s);
    return g.dtype == GemmDtype::f32 ? v : round_to_bf16(v);
  };
  GemmInputs in;
  in.a = gen(size_t(g.a_rows()) * g.lda(), seed);
  in.b = gen(size_t(g.b_rows()) * g.ldb(), seed + 1);
  in.c0 = gen(size_t(g.m) * g.ldc(), seed + 2);
  in.bias = gen(size_t(g.n), seed + 3);
  if (g.beta == 0.0f)  // beta = 0 must ignore C entirely, even NaN; the padding keeps values
    for (int i = 0; i < g.m; ++i)
      for (int j = 0; j < g.n; ++j)
        in.c0[size_t(i) * g.ldc() + j] = std::numeric_limits<float>::quiet_NaN();
  return in;
}

// The CPU path a Linear (+ ReLU) takes: dp::gemm, then dp::add_row_bias and dp::relu_forward
// on each row of C (row by row because C may be padded).
std::vector<float> cpu_reference(const GemmCase& g, const GemmInputs& in) {
  std::vector<float> c = in.c0;
  dp::gemm(g.ta, g.tb, g.m, g.n, g.k, g.alpha, in.a.data(), g.lda(), in.b.data(), g.ldb(), g.beta,
           c.data(), g.ldc());
  if (g.epi != Epilogue::none) {
    for (int i = 0; i < g.m; ++i) {
      float* row = c.data() + size_t(i) * g.ldc();
      dp::add_row_bias(1, size_t(g.n), in.bias.data(), row);
      if (g.epi == Epilogue::relu_bias) dp::relu_forward(size_t(g.n), row, row);
    }
  }
  return c;
}

// What the float32 result may differ by: a multiple of sum_p |alpha a_ip b_pj| + |beta c| +
// |bias| (the classic bound for a reordered dot product, here computed by the CPU gemm on
// absolute values), plus a multiple of the result itself (output rounding).
std::vector<double> tolerance(const GemmCase& g, const GemmInputs& in) {
  auto absv = [](std::vector<float> v) {
    for (float& x : v) x = std::isnan(x) ? 0.0f : std::fabs(x);
    return v;
  };
  GemmCase ga = g;
  ga.alpha = std::fabs(g.alpha);
  ga.beta = std::fabs(g.beta);
  ga.epi = g.epi == Epilogue::none ? Epilogue::none : Epilogue::bias;  // + |bias|, no ReLU
  GemmInputs abs_in{absv(in.a), absv(in.b), absv(in.c0), absv(in.bias)};
  std::vector<float> mag = cpu_reference(ga, abs_in);
  std::vector<float> want = cpu_reference(g, in);
  // f32: fp32 FMAs in another order. bf16 inputs: the tensor cores' fp32 accumulation is not
  // round-to-nearest. bf16 output: one rounding to 8 bits, possibly of an intermediate that
  // is as large as mag (the unfused epilogue rounds the product before adding the bias).
  const double rel = g.dtype == GemmDtype::bf16 ? 1e-2 : 1e-4;
  const double per_mag =
      g.dtype == GemmDtype::f32 ? 1e-5 : (g.dtype == GemmDtype::bf16_f32 ? 1e-4 : 4e-3);
  std::vector<double> tol(want.size());
  for (size_t i = 0; i < tol.size(); ++i)
    tol[i] = rel * std::fabs(double(want[i])) + per_mag * mag[i] + 1e-30;
  return tol;
}

::testing::AssertionResult within(const std::vector<float>& got, const std::vector<float>& want,
                                  const std::vector<double>& tol) {
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) && std::isnan(want[i])) continue;
    if (!(std::fabs(double(got[i]) - double(want[i])) <= tol[i]) && bad++ == 0) first = i;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << got.size() << " elements out of tolerance; first at " << first
         << ": got " << got[first] << ", expected " << want[first] << " (tolerance " << tol[first]
         << ")";
}

template <typename T>
std::vector<T> as(const std::vector<float>& v);
template <>
std::vector<float> as<float>(const std::vector<float>& v) {
  return v;
}
template <>
std::vector<__nv_bfloat16> as<__nv_bfloat16>(const std::vector<float>& v) {
  return to_bf16(v);
}
std::vector<float> to_float(const std::vector<float>& v) {
  return v;
}
std::vector<float> to_float(const std::vector<__nv_bfloat16>& v) {
  return from_bf16(v);
}

template <typename AB, typename C>
std::vector<float> run_typed(cuda::CublasLt& ctx, const GemmCase& g, const GemmInputs& in,
                             cudaStream_t s) {
  DeviceBuffer<AB> a(as<AB>(in.a), s, g.front), b(as<AB>(in.b), s, g.front);
  DeviceBuffer<C> c(as<C>(in.c0), s, g.front), bias(as<C>(in.bias), s, g.front);
  cuda::gemm(ctx, g.ta, g.tb, g.m, g.n, g.k, g.alpha, a.get(), g.lda(), b.get(), g.ldb(), g.beta,
             c.get(), g.ldc(), g.dtype, g.epi, g.epi == Epilogue::none ? nullptr : bias.get(), s);
  DP_CUDA_CHECK(cudaStreamSynchronize(s));
  EXPECT_TRUE(c.guards_intact()) << "gemm wrote outside C: " << g.str();
  EXPECT_TRUE(a.guards_intact() && b.guards_intact() && bias.guards_intact()) << g.str();
  return to_float(c.download());
}

// C as floats, whatever the dtype.
std::vector<float> run_gpu(cuda::CublasLt& ctx, const GemmCase& g, const GemmInputs& in,
                           cudaStream_t s) {
  switch (g.dtype) {
    case GemmDtype::f32:
      return run_typed<float, float>(ctx, g, in, s);
    case GemmDtype::bf16:
      return run_typed<__nv_bfloat16, __nv_bfloat16>(ctx, g, in, s);
    case GemmDtype::bf16_f32:
      return run_typed<__nv_bfloat16, float>(ctx, g, in, s);
  }
  return {};
}

struct Mnk {
  int m, n, k;
};

// Odd sizes (nothing a multiple of 8 except the MLP shapes), a 1x1x1, skinny and wide
// outputs, a long k, and the MLP's own forward shape (batch 64, 784 -> 256).
const std::vector<Mnk> kShapes = {{1, 1, 1},       {7, 5, 11},   {33, 17, 65},  {64, 256, 784},
                                  {1000, 10, 128}, {4097, 7, 3}, {5, 4097, 33}, {129, 127, 4097}};

using Param = std::tuple<bool, bool, GemmDtype>;

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const auto [ta, tb, dt] = info.param;
  std::string d = dt == GemmDtype::f32 ? "f32" : dt == GemmDtype::bf16 ? "bf16" : "bf16_f32";
  return std::string(ta ? "T" : "N") + (tb ? "T" : "N") + "_" + d;
}

}  // namespace

class CudaGemm : public CudaTest, public ::testing::WithParamInterface<Param> {};

// Random floats: every shape x beta {0, 1} x epilogue x {tight, padded} leading dimensions.
TEST_P(CudaGemm, MatchesCpuGemmWithEpilogues) {
  const auto [ta, tb, dtype] = GetParam();
  cuda::CublasLt ctx;
  uint64_t seed = 1000;
  for (const Mnk& s : kShapes)
    for (float beta : {0.0f, 1.0f})
      for (Epilogue epi : {Epilogue::none, Epilogue::bias, Epilogue::relu_bias})
        for (int pad : {0, 3}) {
          GemmCase g;
          g.ta = ta, g.tb = tb, g.m = s.m, g.n = s.n, g.k = s.k, g.alpha = 0.75f, g.beta = beta;
          g.epi = epi, g.dtype = dtype, g.pad = pad;
          SCOPED_TRACE(g.str());
          const GemmInputs in = make_inputs(g, seed += 10, false);
          const std::vector<float> got = run_gpu(ctx, g, in, stream);
          ASSERT_TRUE(within(got, cpu_reference(g, in), tolerance(g, in)));
        }
}

// Small integers: the products and sums are exact in fp32, so any correct GEMM gives the CPU's
// bits exactly, whatever its algorithm. A bf16 output holds integers up to 256 exactly, which
// bounds k there.
TEST_P(CudaGemm, ExactOnSmallIntegers) {
  const auto [ta, tb, dtype] = GetParam();
  cuda::CublasLt ctx;
  const std::vector<Mnk> shapes =
      dtype == GemmDtype::bf16
          ? std::vector<Mnk>{{1, 1, 1}, {7, 5, 11}, {4097, 7, 3}, {5, 4097, 3}, {33, 65, 15}}
          : kShapes;
  uint64_t seed = 5000;
  for (const Mnk& s : shapes)
    for (float beta : {0.0f, 1.0f})
      for (Epilogue epi : {Epilogue::none, Epilogue::bias, Epilogue::relu_bias})
        for (int pad : {0, 3}) {
          GemmCase g;
          g.ta = ta, g.tb = tb, g.m = s.m, g.n = s.n, g.k = s.k, g.beta = beta, g.epi = epi;
          g.alpha = dtype == GemmDtype::bf16 ? 1.0f : 0.5f;  // a power of two stays exact
          g.dtype = dtype, g.pad = pad;
          SCOPED_TRACE(g.str());
          const GemmInputs in = make_inputs(g, seed += 10, true);
          ASSERT_TRUE(all_equal(run_gpu(ctx, g, in, stream), cpu_reference(g, in)));
        }
}

// Sub-views at odd offsets: every pointer only element-aligned (4 bytes for f32, 2 for bf16).
// The plan must be built for that alignment, and a bias below 16 bytes goes unfused.
TEST_P(CudaGemm, ElementAlignedPointers) {
  const auto [ta, tb, dtype] = GetParam();
  cuda::CublasLt ctx;
  uint64_t seed = 9000;
  for (const Mnk& s : std::vector<Mnk>{{33, 17, 15}, {64, 256, 13}, {7, 129, 9}})
    for (Epilogue epi : {Epilogue::none, Epilogue::relu_bias}) {
      GemmCase g;
      g.ta = ta, g.tb = tb, g.m = s.m, g.n = s.n, g.k = s.k, g.beta = 1.0f, g.epi = epi;
      g.dtype = dtype, g.front = 1, g.pad = 1;
      SCOPED_TRACE(g.str());
      const GemmInputs in = make_inputs(g, seed += 10, true);
      ASSERT_TRUE(all_equal(run_gpu(ctx, g, in, stream), cpu_reference(g, in)));
    }
  EXPECT_EQ(ctx.unfused_epilogue_plans(), 3u) << "a 2- or 4-byte aligned bias is never fused";
}

INSTANTIATE_TEST_SUITE_P(AllTransposesAndDtypes, CudaGemm,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool(),
                                            ::testing::Values(GemmDtype::f32, GemmDtype::bf16,
                                                              GemmDtype::bf16_f32)),
                         param_name);

class CudaGemmContext : public CudaTest {};

// The second and later calls of a shape reuse its plan, and give the same bits.
TEST_F(CudaGemmContext, PlansAreCachedAndResultsRepeat) {
  cuda::CublasLt ctx;
  GemmCase g;
  g.tb = true, g.m = 64, g.n = 256, g.k = 784, g.beta = 0.0f, g.epi = Epilogue::relu_bias;
  const GemmInputs in = make_inputs(g, 77, false);
  const std::vector<float> first = run_gpu(ctx, g, in, stream);
  EXPECT_EQ(ctx.cached_plans(), 1u);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(all_equal(run_gpu(ctx, g, in, stream), first));
  EXPECT_EQ(ctx.cached_plans(), 1u);
  EXPECT_EQ(ctx.unfused_epilogue_plans(), 0u) << "an aligned fp32 bias should fuse";
  g.m = 65;
  run_gpu(ctx, g, make_inputs(g, 78, false), stream);
  EXPECT_EQ(ctx.cached_plans(), 2u);
}

// k = 0: no product, C = epilogue(beta * C), as the CPU gemm defines it.
TEST_F(CudaGemmContext, EmptyInnerDimension) {
  cuda::CublasLt ctx;
  for (GemmDtype dtype : {GemmDtype::f32, GemmDtype::bf16})
    for (float beta : {0.0f, 0.5f, 1.0f})
      for (Epilogue epi : {Epilogue::none, Epilogue::bias, Epilogue::relu_bias}) {
        GemmCase g;
        g.m = 7, g.n = 33, g.k = 0, g.beta = beta, g.epi = epi, g.dtype = dtype, g.pad = 2;
        SCOPED_TRACE(g.str());
        const GemmInputs in = make_inputs(g, 300, false);
        ASSERT_TRUE(all_close(run_gpu(ctx, g, in, stream), cpu_reference(g, in),
                              dtype == GemmDtype::f32 ? 1e-6 : 1e-2, 1e-3));
      }
  EXPECT_EQ(ctx.cached_plans(), 0u) << "k = 0 never reaches cuBLASLt";
}

// m = 0 or n = 0 is a no-op that touches nothing, not even the (null) pointers.
TEST_F(CudaGemmContext, EmptyOutputIsANoOp) {
  cuda::CublasLt ctx;
  cuda::gemm(ctx, false, false, 0, 5, 3, 1.0f, nullptr, 3, nullptr, 5, 0.0f, nullptr, 5,
             GemmDtype::f32, Epilogue::none, nullptr, stream);
  cuda::gemm(ctx, false, false, 5, 0, 3, 1.0f, nullptr, 3, nullptr, 1, 0.0f, nullptr, 1,
             GemmDtype::f32, Epilogue::none, nullptr, stream);
  sync();
}

TEST_F(CudaGemmContext, BadArgumentsAreErrors) {
  cuda::CublasLt ctx;
  DeviceBuffer<float> a(64, stream), b(64, stream), c(64, stream);
  auto call = [&](int lda, int ldb, int ldc, Epilogue epi) {
    cuda::gemm(ctx, false, false, 4, 4, 4, 1.0f, a.get(), lda, b.get(), ldb, 0.0f, c.get(), ldc,
               GemmDtype::f32, epi, nullptr, stream);
  };
  EXPECT_THROW(call(3, 4, 4, Epilogue::none), dp::Error);  // lda < k
  EXPECT_THROW(call(4, 3, 4, Epilogue::none), dp::Error);  // ldb < n
  EXPECT_THROW(call(4, 4, 3, Epilogue::none), dp::Error);  // ldc < n
  EXPECT_THROW(call(4, 4, 4, Epilogue::bias), dp::Error);  // epilogue without a bias
  EXPECT_THROW(cuda::gemm(ctx, false, false, -1, 4, 4, 1.0f, a.get(), 4, b.get(), 4, 0.0f, c.get(),
                          4, GemmDtype::f32, Epilogue::none, nullptr, stream),
               dp::Error);
  // A float pointer that is not 4-byte aligned.
  const void* odd = reinterpret_cast<const char*>(a.get()) + 2;
  EXPECT_THROW(cuda::gemm(ctx, false, false, 4, 4, 4, 1.0f, odd, 4, b.get(), 4, 0.0f, c.get(), 4,
                          GemmDtype::f32, Epilogue::none, nullptr, stream),
               dp::Error);
  EXPECT_EQ(ctx.cached_plans(), 0u);
}
