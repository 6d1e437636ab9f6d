// The bf16_compress and fp16_compress comm hooks in one process: their conversions, the
// thread-rank fixture's 16-bit all-reduces and the Reducer with N threads as N ranks. The
// fixture reduces bfloat16 and float16 as the MPI backend's shared-memory path does (float32
// sum in rank order, one rounding), so the reduced gradients are compared bit for bit with a
// host reference. Multi-process checks: tests/mpi/test_comm_hook.cpp and
// test_half_collectives.cpp.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/core/half_float.h"
#include "runtime/ddp/comm_hook.h"
#include "runtime/ddp/reducer.h"
#include "tests/support/float_bits.h"
#include "tests/support/reducer_fixture.h"
#include "tests/support/thread_process_group.h"

using namespace dp;

namespace {

using test::bits_of;
using test::Grads;

// What `hook` makes of every rank's value of one element. bf16_compress: each rounded to
// bfloat16, summed in float32 in rank order, averaged, rounded once. fp16_compress: each
// divided by the world size (a float32 multiplication by 1/world) and rounded to float16,
// summed in float32 in rank order, rounded once.
float hook_reduction(CommHook hook, const std::vector<float>& per_rank) {
  const float inv = 1.0f / float(per_rank.size());
  float acc = 0;
  for (size_t r = 0; r < per_rank.size(); ++r) {
    const float v = hook == CommHook::fp16_compress ? round_to<f16>(per_rank[r] * inv)
                                                    : round_to<bf16>(per_rank[r]);
    acc = r == 0 ? v : acc + v;
  }
  return hook == CommHook::fp16_compress ? round_to<f16>(acc) : round_to<bf16>(acc * inv);
}

constexpr uint64_t kSeed = 99;  // of every rank's batch

}  // namespace

TEST(CommHook, NamesRoundTripAndUnknownNamesAreErrors) {
  EXPECT_STREQ(comm_hook_name(CommHook::none), "none");
  EXPECT_STREQ(comm_hook_name(CommHook::bf16_compress), "bf16_compress");
  EXPECT_STREQ(comm_hook_name(CommHook::fp16_compress), "fp16_compress");
  for (CommHook h : {CommHook::none, CommHook::bf16_compress, CommHook::fp16_compress}) {
    EXPECT_EQ(parse_comm_hook(comm_hook_name(h)), h);
  }
  EXPECT_EQ(comm_hook_wire_dtype(CommHook::none), DType::f32);
  EXPECT_EQ(comm_hook_wire_dtype(CommHook::bf16_compress), DType::bf16);
  EXPECT_EQ(comm_hook_wire_dtype(CommHook::fp16_compress), DType::f16);
  EXPECT_EQ(comm_hook_reduce_op(CommHook::bf16_compress), ReduceOp::avg);
  EXPECT_EQ(comm_hook_reduce_op(CommHook::fp16_compress), ReduceOp::sum);
  try {
    parse_comm_hook("fp8_compress");
    ADD_FAILURE() << "an unknown hook was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fp16_compress"), std::string::npos) << e.what();
  }
}

TEST(CommHook, CompressRoundsToNearestEvenAndDecompressIsExact) {
  const std::vector<float> v = {
      0.0f,      -0.0f,  1.0f,  1.00390625f /* tie: to even */,        1.01171875f /* tie: up */,
      -3.14159f, 1e-30f, 3e38f, std::numeric_limits<float>::infinity()};
  Tensor f = Tensor::from_vector({int64_t(v.size())}, v);
  Tensor w = Tensor::zeros({int64_t(v.size())}, DType::bf16);
  bf16_compress(f, w);
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(w.data<bf16>()[i].bits, float_to_bf16(v[i]).bits);
  Tensor back = Tensor::zeros({int64_t(v.size())});
  decompress(w, back);
  for (size_t i = 0; i < v.size(); ++i)
    EXPECT_EQ(bits_of(back.f32()[i]), bits_of(round_to_bf16(v[i])));
  Tensor short_wire = Tensor::zeros({3}, DType::bf16);
  EXPECT_THROW(bf16_compress(f, short_wire), Error);
  EXPECT_THROW(decompress(f, back), Error);  // float32 is not a wire buffer
  Tensor h = Tensor::zeros({int64_t(v.size())}, DType::f16);
  EXPECT_THROW(bf16_compress(f, h), Error);  // the wrong 16-bit type
}

TEST(CommHook, Fp16CompressDividesByTheWorldBeforeTheCast) {
  // 1e5 overflows float16 by itself but not once divided by 4; 3e5 / 4 still does: inf, as
  // in PyTorch. 1e-6 / 4 is a float16 subnormal; 1e-8 / 4 flushes to zero.
  const std::vector<float> v = {0.0f,  1.0f,  -3.0f, 1e5f, -1e5f,       3e5f,
                                -3e5f, 1e-6f, 1e-8f, 0.1f, 65504.0f * 4};
  const int world = 4;
  Tensor f = Tensor::from_vector({int64_t(v.size())}, v);
  Tensor w = Tensor::zeros({int64_t(v.size())}, DType::f16);
  fp16_compress(f, w, world);
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_EQ(f.f32()[i], v[i] * 0.25f) << i << ": the float32 bucket is divided in place";
    EXPECT_EQ(w.data<f16>()[i].bits, float_to_f16(v[i] * 0.25f).bits) << i;
  }
  Tensor back = Tensor::zeros({int64_t(v.size())});
  decompress(w, back);
  EXPECT_EQ(back.f32()[3], round_to<f16>(25000.0f));  // finite: 24992
  EXPECT_EQ(back.f32()[5], std::numeric_limits<float>::infinity());
  EXPECT_EQ(back.f32()[6], -std::numeric_limits<float>::infinity());
  EXPECT_GT(back.f32()[7], 0.0f);
  EXPECT_EQ(back.f32()[8], 0.0f);
  EXPECT_EQ(back.f32()[10], 65504.0f);
  // A world of one: no division, a plain cast.
  Tensor one = Tensor::from_vector({2}, std::vector<float>{1e5f, 0.1f});
  Tensor w1 = Tensor::zeros({2}, DType::f16);
  fp16_compress(one, w1, 1);
  EXPECT_EQ(w1.data<f16>()[0].bits, 0x7c00u);
  EXPECT_EQ(w1.data<f16>()[1].bits, float_to_f16(0.1f).bits);
  Tensor b = Tensor::zeros({int64_t(v.size())}, DType::bf16);
  EXPECT_THROW(fp16_compress(f, b, world), Error);
  EXPECT_THROW(fp16_compress(f, w, 0), Error);
}

template <typename H>
void expect_thread_fixture_reduces_in_float_and_rounds_once() {
  for (int n : {1, 2, 3, 4}) {
    test::run_ranks(n, [&](ProcessGroup& pg) {
      const size_t len = 101;
      auto value = [](int r, size_t i) { return std::sin(0.37f * float(i) + 1.3f * float(r)); };
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg}) {
        Tensor t = Tensor::zeros({int64_t(len)}, dtype_of<H>::value);
        for (size_t i = 0; i < len; ++i) t.data<H>()[i] = narrow<H>(value(pg.rank(), i));
        pg.allreduce(t, op, "half")->wait(std::chrono::seconds(60));
        for (size_t i = 0; i < len; ++i) {
          float acc = round_to<H>(value(0, i));
          for (int r = 1; r < n; ++r) acc += round_to<H>(value(r, i));
          if (op == ReduceOp::avg) acc *= 1.0f / float(n);
          ASSERT_EQ(t.data<H>()[i].bits, narrow<H>(acc).bits) << "n=" << n << " i=" << i;
        }
      }
      Tensor t = Tensor::zeros({4}, dtype_of<H>::value);
      EXPECT_THROW(pg.allreduce(t, ReduceOp::max), Error);  // only sum and avg
    });
  }
}

TEST(CommHook, ThreadFixtureReducesBf16InFloatAndRoundsOnce) {
  expect_thread_fixture_reduces_in_float_and_rounds_once<bf16>();
}

TEST(CommHook, ThreadFixtureReducesF16InFloatAndRoundsOnce) {
  expect_thread_fixture_reduces_in_float_and_rounds_once<f16>();
}

class CommHookThreads : public ::testing::TestWithParam<std::tuple<CommHook, int>> {};

TEST_P(CommHookThreads, GradientsAreTheHookReductionAndTheWireIs16Bit) {
  const CommHook hook = std::get<0>(GetParam());
  const int n = std::get<1>(GetParam());
  std::vector<Grads> per_rank;
  per_rank.reserve(size_t(n));
  for (int r = 0; r < n; ++r) per_rank.push_back(test::local_grads(kSeed, r));
  std::mutex mu;
  std::vector<Grads> reduced(static_cast<size_t>(n));
  test::run_ranks(n, [&](ProcessGroup& pg) {
    auto model = test::fixture_mlp();
    ReducerOptions o;
    o.first_bucket_mb = 1e-4;  // several buckets, launched from inside backward
    o.bucket_cap_mb = 2e-4;
    o.comm_hook = hook;
    Reducer reducer(model->parameters(), pg, o);
    ASSERT_GE(reducer.buckets().size(), 2u);
    EXPECT_NE(reducer.layout().find(comm_hook_name(hook)), std::string::npos) << reducer.layout();
    const test::RankBatch batch(kSeed, pg.rank());
    for (int step = 0; step < 2; ++step) {  // the second step runs on the rebuilt buckets
      test::reduce_one_step(*model, reducer, batch);
      for (const Bucket& b : reducer.buckets()) {
        EXPECT_EQ(b.wire.dtype(), comm_hook_wire_dtype(hook));
        EXPECT_EQ(b.wire.numel(), b.flat.numel());
        EXPECT_EQ(b.wire_bytes(), b.flat.numel() * 2);
      }
      for (const BucketSpan& s : reducer.last_stats().spans) {
        EXPECT_EQ(s.bytes, reducer.buckets()[s.bucket].flat.numel() * 2) << "bucket " << s.bucket;
      }
    }
    Grads g = test::grads_of(*model);
    std::lock_guard<std::mutex> lock(mu);
    reduced[size_t(pg.rank())] = std::move(g);
  });
  for (size_t p = 0; p < per_rank[0].size(); ++p) {
    for (size_t i = 0; i < per_rank[0][p].size(); ++i) {
      std::vector<float> vals;
      vals.reserve(size_t(n));
      for (int r = 0; r < n; ++r) vals.push_back(per_rank[size_t(r)][p][i]);
      const float want = hook_reduction(hook, vals);
      for (int r = 0; r < n; ++r) {
        ASSERT_EQ(bits_of(reduced[size_t(r)][p][i]), bits_of(want))
            << "rank " << r << " parameter " << p << " element " << i << ": "
            << reduced[size_t(r)][p][i] << " vs " << want;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, CommHookThreads,
                         ::testing::Combine(::testing::Values(CommHook::bf16_compress,
                                                              CommHook::fp16_compress),
                                            ::testing::Values(1, 2, 3, 4)),
                         [](const auto& info) {
                           return std::string(comm_hook_name(std::get<0>(info.param))) + "_" +
                                  std::to_string(std::get<1>(info.param));
                         });
