// The Reducer with N threads as N ranks in one process (gloo's pattern, DESIGN.md
// "Testing multi-rank logic"): fast checks of what the Reducer computes, next to the real
// multi-process tests under mpirun (tests/mpi/test_ddp.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <mutex>

#include "models/mlp.h"
#include "runtime/ddp/reducer.h"
#include "tests/support/reducer_fixture.h"
#include "tests/support/thread_process_group.h"

using namespace dp;

namespace {

constexpr uint64_t kSeed = 1234;  // of every rank's batch

}  // namespace

class ReducerThreads : public ::testing::TestWithParam<int> {};

TEST_P(ReducerThreads, GradientsAreTheAverageOfEveryRanksGradients) {
  const int n = GetParam();
  std::vector<test::Grads> expected_per_rank;
  expected_per_rank.reserve(size_t(n));
  for (int r = 0; r < n; ++r) expected_per_rank.push_back(test::local_grads(kSeed, r));
  std::mutex mu;
  std::vector<test::Grads> reduced(n);
  test::run_ranks(n, [&](ProcessGroup& pg) {
    auto model = test::fixture_mlp();
    ReducerOptions o;
    o.first_bucket_mb = 1e-4;  // several buckets, launched from inside backward
    o.bucket_cap_mb = 2e-4;
    Reducer reducer(model->parameters(), pg, o);
    const test::RankBatch batch(kSeed, pg.rank());
    for (int step = 0; step < 2; ++step) {  // the second step runs on the rebuilt buckets
      test::reduce_one_step(*model, reducer, batch);
    }
    test::Grads g = test::grads_of(*model);
    std::lock_guard<std::mutex> lock(mu);
    reduced[pg.rank()] = std::move(g);
  });
  for (size_t p = 0; p < expected_per_rank[0].size(); ++p) {
    for (size_t i = 0; i < expected_per_rank[0][p].size(); ++i) {
      double mean = 0;
      for (int r = 0; r < n; ++r) mean += expected_per_rank[r][p][i];
      mean /= n;
      for (int r = 0; r < n; ++r) {
        ASSERT_NEAR(reduced[r][p][i], mean, 1e-6 + 1e-5 * std::fabs(mean))
            << "rank " << r << " parameter " << p << " element " << i;
      }
    }
  }
}

TEST_P(ReducerThreads, NoSyncAccumulatesWithoutCommunicating) {
  const int n = GetParam();
  test::run_ranks(n, [&](ProcessGroup& pg) {
    auto model = make_mlp(12, {9}, 4, 5);
    Reducer reducer(model->parameters(), pg, ReducerOptions{});
    reducer.zero_grad();
    for (int k = 0; k < 3; ++k) {
      reducer.prepare_for_backward(/*sync=*/false);
      for (Parameter* p : model->parameters()) {
        float* g = p->grad.f32();
        for (size_t i = 0; i < p->grad.numel(); ++i) g[i] += float(pg.rank() + 1);
        p->grad_ready();
      }
      reducer.finish();
      // Still this rank's own sum: nothing was reduced.
      EXPECT_FLOAT_EQ(model->parameters()[0]->grad.f32()[0], float((k + 1) * (pg.rank() + 1)));
    }
    reducer.prepare_for_backward(/*sync=*/true);
    for (Parameter* p : model->parameters()) p->grad_ready();
    reducer.finish();
    // Average over ranks of 3 * (r + 1) = 3 * (n + 1) / 2.
    EXPECT_FLOAT_EQ(model->parameters()[0]->grad.f32()[0], 3.0f * float(n + 1) / 2.0f);
  });
}

// A tied weight (two users) that one step uses only once has its gradient all the same: it
// is averaged at finish(), not reported as "no gradient" (only a parameter no use reached
// is), also when the ranks use it a different number of times.
TEST_P(ReducerThreads, ATiedWeightUsedOnceOfTwiceIsReducedAtFinish) {
  const int n = GetParam();
  test::run_ranks(n, [&](ProcessGroup& pg) {
    Parameter tied("tie.w", {4});
    tied.add_use();  // two users
    Parameter other("other.w", {4});
    ReducerOptions o;
    o.first_bucket_mb = 1e-5;  // a bucket each
    o.bucket_cap_mb = 1e-5;
    Reducer reducer({&tied, &other}, pg, o);
    for (int step = 0; step < 2; ++step) {
      reducer.zero_grad();
      reducer.prepare_for_backward(/*sync=*/true);
      other.grad.fill_(1.0f);
      other.grad_ready();
      const int uses = (pg.rank() + step) % 2 == 0 ? 1 : 2;  // both kinds, on every rank
      for (int u = 0; u < uses; ++u) {
        for (size_t i = 0; i < 4; ++i) tied.grad.f32()[i] += float(pg.rank() + 1);
        tied.grad_ready();
      }
      reducer.finish();
      float mean = 0;
      for (int r = 0; r < n; ++r) mean += float(r + 1) * float((r + step) % 2 == 0 ? 1 : 2);
      mean /= float(n);
      EXPECT_FLOAT_EQ(tied.grad.f32()[3], mean) << "step " << step;
      EXPECT_FLOAT_EQ(other.grad.f32()[0], 1.0f);
    }
    // A parameter no use reached is still an error.
    reducer.prepare_for_backward(/*sync=*/true);
    other.grad_ready();
    EXPECT_THROW(reducer.finish(), Error);
  });
}

INSTANTIATE_TEST_SUITE_P(Ranks, ReducerThreads, ::testing::Values(1, 2, 3, 4));
