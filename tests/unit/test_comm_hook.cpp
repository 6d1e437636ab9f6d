// The bf16_compress comm hook in one process: its conversions, the thread-rank fixture's
// bfloat16 all-reduce and the Reducer with N threads as N ranks. The fixture reduces
// bfloat16 as the MPI backend's shared-memory path does (float32 sum in rank order, one
// rounding), so the reduced gradients are compared bit for bit with a host reference.
// Multi-process checks: tests/mpi/test_comm_hook.cpp and test_bf16_collectives.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "models/mlp.h"
#include "runtime/core/bf16.h"
#include "runtime/core/rng.h"
#include "runtime/ddp/comm_hook.h"
#include "runtime/ddp/reducer.h"
#include "runtime/nn/cross_entropy.h"
#include "tests/support/thread_process_group.h"

using namespace dp;

namespace {

using Grads = std::vector<std::vector<float>>;  // per parameter

// What bf16_compress makes of every rank's value of one element: each rounded to bfloat16,
// summed in float32 in rank order, averaged, rounded once.
float bf16_average(const std::vector<float>& per_rank) {
  float acc = round_to_bf16(per_rank[0]);
  for (size_t r = 1; r < per_rank.size(); ++r) acc += round_to_bf16(per_rank[r]);
  return round_to_bf16(acc * (1.0f / float(per_rank.size())));
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

void make_batch(int rank, Tensor& x, Tensor& y) {
  Philox rng(99, static_cast<uint64_t>(rank));
  float* px = x.f32();
  for (size_t i = 0; i < x.numel(); ++i) px[i] = rng.normal();
  int32_t* py = y.data<int32_t>();
  for (size_t i = 0; i < y.numel(); ++i) py[i] = static_cast<int32_t>(rng.below(4));
}

Grads local_grads(int rank) {
  auto model = make_mlp(12, {9, 7}, 4, 5);
  Tensor x = Tensor::zeros({6, 12}), y = Tensor::zeros({6}, DType::i32);
  make_batch(rank, x, y);
  SoftmaxCrossEntropy loss;
  loss.forward(model->forward(x), y);
  model->backward(loss.backward());
  Grads g;
  for (Parameter* p : model->parameters()) g.push_back(p->grad.to_vector());
  return g;
}

}  // namespace

TEST(CommHook, NamesRoundTripAndUnknownNamesAreErrors) {
  EXPECT_STREQ(comm_hook_name(CommHook::none), "none");
  EXPECT_STREQ(comm_hook_name(CommHook::bf16_compress), "bf16_compress");
  EXPECT_EQ(parse_comm_hook("none"), CommHook::none);
  EXPECT_EQ(parse_comm_hook("bf16_compress"), CommHook::bf16_compress);
  EXPECT_EQ(comm_hook_wire_dtype(CommHook::none), DType::f32);
  EXPECT_EQ(comm_hook_wire_dtype(CommHook::bf16_compress), DType::bf16);
  try {
    parse_comm_hook("fp16_compress");
    ADD_FAILURE() << "an unknown hook was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bf16_compress"), std::string::npos) << e.what();
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
  bf16_decompress(w, back);
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(bits(back.f32()[i]), bits(round_to_bf16(v[i])));
  Tensor short_wire = Tensor::zeros({3}, DType::bf16);
  EXPECT_THROW(bf16_compress(f, short_wire), Error);
  EXPECT_THROW(bf16_decompress(f, back), Error);  // float32 is not a wire buffer
}

TEST(CommHook, ThreadFixtureReducesBf16InFloatAndRoundsOnce) {
  for (int n : {1, 2, 3, 4}) {
    test::run_ranks(n, [&](ProcessGroup& pg) {
      const size_t len = 101;
      auto value = [](int r, size_t i) { return std::sin(0.37f * float(i) + 1.3f * float(r)); };
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg}) {
        Tensor t = Tensor::zeros({int64_t(len)}, DType::bf16);
        for (size_t i = 0; i < len; ++i) t.data<bf16>()[i] = float_to_bf16(value(pg.rank(), i));
        pg.allreduce(t, op, "bf16")->wait();
        for (size_t i = 0; i < len; ++i) {
          float acc = round_to_bf16(value(0, i));
          for (int r = 1; r < n; ++r) acc += round_to_bf16(value(r, i));
          if (op == ReduceOp::avg) acc *= 1.0f / float(n);
          ASSERT_EQ(t.data<bf16>()[i].bits, float_to_bf16(acc).bits) << "n=" << n << " i=" << i;
        }
      }
      Tensor t = Tensor::zeros({4}, DType::bf16);
      EXPECT_THROW(pg.allreduce(t, ReduceOp::max), Error);  // only sum and avg
    });
  }
}

class CommHookThreads : public ::testing::TestWithParam<int> {};

TEST_P(CommHookThreads, GradientsAreTheBf16AverageAndTheWireIsBf16) {
  const int n = GetParam();
  std::vector<Grads> per_rank;
  for (int r = 0; r < n; ++r) per_rank.push_back(local_grads(r));
  std::mutex mu;
  std::vector<Grads> reduced(static_cast<size_t>(n));
  test::run_ranks(n, [&](ProcessGroup& pg) {
    auto model = make_mlp(12, {9, 7}, 4, 5);
    ReducerOptions o;
    o.first_bucket_mb = 1e-4;  // several buckets, launched from inside backward
    o.bucket_cap_mb = 2e-4;
    o.comm_hook = CommHook::bf16_compress;
    Reducer reducer(model->parameters(), pg, o);
    ASSERT_GE(reducer.buckets().size(), 2u);
    EXPECT_NE(reducer.layout().find("bf16_compress"), std::string::npos) << reducer.layout();
    Tensor x = Tensor::zeros({6, 12}), y = Tensor::zeros({6}, DType::i32);
    make_batch(pg.rank(), x, y);
    SoftmaxCrossEntropy loss;
    for (int step = 0; step < 2; ++step) {  // the second step runs on the rebuilt buckets
      reducer.zero_grad();
      reducer.prepare_for_backward(true);
      loss.forward(model->forward(x), y);
      model->backward(loss.backward());
      reducer.finish();
      for (const Bucket& b : reducer.buckets()) {
        EXPECT_EQ(b.wire.dtype(), DType::bf16);
        EXPECT_EQ(b.wire.numel(), b.flat.numel());
        EXPECT_EQ(b.wire_bytes(), b.flat.numel() * 2);
      }
      for (const BucketSpan& s : reducer.last_stats().spans) {
        EXPECT_EQ(s.bytes, reducer.buckets()[s.bucket].flat.numel() * 2) << "bucket " << s.bucket;
      }
    }
    Grads g;
    for (Parameter* p : model->parameters()) g.push_back(p->grad.to_vector());
    std::lock_guard<std::mutex> lock(mu);
    reduced[size_t(pg.rank())] = std::move(g);
  });
  for (size_t p = 0; p < per_rank[0].size(); ++p) {
    for (size_t i = 0; i < per_rank[0][p].size(); ++i) {
      std::vector<float> vals;
      for (int r = 0; r < n; ++r) vals.push_back(per_rank[size_t(r)][p][i]);
      const float want = bf16_average(vals);
      for (int r = 0; r < n; ++r) {
        ASSERT_EQ(bits(reduced[size_t(r)][p][i]), bits(want))
            << "rank " << r << " parameter " << p << " element " << i << ": "
            << reduced[size_t(r)][p][i] << " vs " << want;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, CommHookThreads, ::testing::Values(1, 2, 3, 4));
