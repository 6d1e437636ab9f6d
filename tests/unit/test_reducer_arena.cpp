// The Reducer over a parameter arena (ReducerOptions::arena): buckets that are contiguous
// ranges of the arena all-reduce its gradient block in place (gradient_as_bucket_view), with
// the same averaged gradients as the Reducer's own bucket buffers; a bucket that is not
// contiguous falls back to those buffers. N threads as N ranks (gloo's pattern).
#include <gtest/gtest.h>

#include <cstring>
#include <mutex>

#include "runtime/ddp/reducer.h"
#include "runtime/nn/parameter_arena.h"
#include "tests/support/reducer_fixture.h"
#include "tests/support/thread_process_group.h"

using namespace dp;

namespace {

constexpr uint64_t kSeed = 99;

// Two steps (the second after the rebuild in the observed order) on every rank; returns rank
// r's reduced gradients and whether the buckets were arena views at the end.
std::vector<test::Grads> reduce(int n, bool arena, std::vector<std::vector<size_t>> assignment,
                                std::vector<int>* views = nullptr, double first_mb = 1e-4,
                                double cap_mb = 2e-4) {
  std::mutex mu;
  std::vector<test::Grads> out(n);
  if (views) views->assign(n, -1);
  test::run_ranks(n, [&](ProcessGroup& pg) {
    auto model = test::fixture_mlp();
    std::unique_ptr<ParameterArena> a;
    if (arena) a = std::make_unique<ParameterArena>(model->parameters());
    ReducerOptions o;
    o.first_bucket_mb = first_mb;  // several buckets
    o.bucket_cap_mb = cap_mb;
    o.arena = a.get();
    o.assignment = assignment;
    Reducer reducer(model->parameters(), pg, o);
    const test::RankBatch batch(kSeed, pg.rank());
    for (int step = 0; step < 2; ++step) test::reduce_one_step(*model, reducer, batch);
    test::Grads g = test::grads_of(*model);
    std::lock_guard<std::mutex> lock(mu);
    if (arena) {
      // Views of the arena exactly when the buckets are; its padding is still zero.
      EXPECT_EQ(a->grads_intact(), reducer.buckets_are_arena_views());
      if (reducer.buckets_are_arena_views()) {
        EXPECT_GT(reducer.buckets().size(), 1u);
        for (const Bucket& b : reducer.buckets())
          EXPECT_TRUE(b.flat.shares_storage_with(a->grads())) << b.tag;
        const std::vector<float> block = a->grads().to_vector();
        double in_params = 0, all = 0;
        for (float v : block) all += double(v) * v;
        for (Parameter* p : model->parameters())
          for (float v : p->grad.to_vector()) in_params += double(v) * v;
        EXPECT_EQ(all, in_params) << "a non-zero padding element in the gradient block";
      }
    }
    if (views) (*views)[pg.rank()] = reducer.buckets_are_arena_views();
    out[pg.rank()] = std::move(g);
  });
  return out;
}

}  // namespace

class ReducerArena : public ::testing::TestWithParam<int> {};

TEST_P(ReducerArena, BucketsAreArenaViewsAndAverageBitIdentically) {
  const int n = GetParam();
  std::vector<int> views;
  const auto with = reduce(n, true, {}, &views);
  const auto without = reduce(n, false, {});
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(views[r], 1) << "rank " << r << ": the reverse registration order is contiguous";
    ASSERT_EQ(with[r].size(), without[r].size());
    for (size_t p = 0; p < with[r].size(); ++p)
      EXPECT_EQ(with[r][p], without[r][p]) << "rank " << r << " parameter " << p;
  }
}

TEST_P(ReducerArena, AnInterleavedBucketFallsBackToItsOwnBuffer) {
  const int n = GetParam();
  // fixture_mlp has 6 parameters; {0, 2} skips 1, so that bucket is no arena range.
  const std::vector<std::vector<size_t>> interleaved = {{5, 4}, {0, 2}, {3, 1}};
  std::vector<int> views;
  const auto with = reduce(n, true, interleaved, &views);
  const auto without = reduce(n, false, interleaved);
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(views[r], 0) << "rank " << r;
    for (size_t p = 0; p < with[r].size(); ++p)
      EXPECT_EQ(with[r][p], without[r][p]) << "rank " << r << " parameter " << p;
  }
}

TEST_P(ReducerArena, TheRebuildKeepsBucketsThatAreArenaRanges) {
  const int n = GetParam();
  // fixture_mlp's gradients become ready as fc3.weight, fc3.bias, fc2.weight, ...: with a
  // first bucket that holds fc3.weight alone and a cap that takes fc3.bias, fc2.weight and
  // fc2.bias, the observed order's second bucket {fc3.bias, fc2.*} is no arena range, so the
  // Reducer keeps the reverse-order buckets (all ranges); gradients are the same either way.
  std::vector<int> views;
  const auto with = reduce(n, true, {}, &views, 1.1e-4, 2.9e-4);
  const auto without = reduce(n, false, {}, nullptr, 1.1e-4, 2.9e-4);
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(views[r], 1) << "rank " << r;
    for (size_t p = 0; p < with[r].size(); ++p)
      EXPECT_EQ(with[r][p], without[r][p]) << "rank " << r << " parameter " << p;
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, ReducerArena, ::testing::Values(1, 2, 3));
