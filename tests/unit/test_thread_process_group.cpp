#include "tests/support/thread_process_group.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

using namespace dp;
using dp::test::run_ranks;
using dp::test::ThreadWorld;

namespace {

// Generous: a wait that hits it is a hang the test reports instead of sitting in.
constexpr std::chrono::milliseconds kWait{10000};

Tensor rank_values(int rank, size_t n) {
  Tensor t = Tensor::zeros({int64_t(n)});
  float* p = t.f32();
  for (size_t i = 0; i < n; ++i) p[i] = float(int(i % 101) - 50 + 7 * rank);
  return t;
}

class ThreadPG : public ::testing::TestWithParam<int> {};

}  // namespace

TEST_P(ThreadPG, AllreduceSumAvgMinMax) {
  const int n = GetParam();
  const size_t len = 37;
  run_ranks(n, [&](ProcessGroup& pg) {
    EXPECT_EQ(pg.size(), n);
    EXPECT_EQ(pg.backend(), "threads");
    Tensor sum = rank_values(pg.rank(), len), avg = sum.clone(), mn = sum.clone(), mx = sum.clone();
    auto w1 = pg.allreduce(sum, ReduceOp::sum, "s");
    auto w2 = pg.allreduce(avg, ReduceOp::avg, "a");
    auto w3 = pg.allreduce(mn, ReduceOp::min, "mn");
    auto w4 = pg.allreduce(mx, ReduceOp::max, "mx");
    for (auto& w : {w1, w2, w3, w4}) w->wait(kWait);
    for (size_t i = 0; i < len; ++i) {
      float base = float(int(i % 101) - 50), s = 0;
      for (int r = 0; r < n; ++r) s += base + 7.0f * r;
      EXPECT_EQ(sum.f32()[i], s) << i;
      EXPECT_EQ(avg.f32()[i], s * (1.0f / float(n))) << i;
      EXPECT_EQ(mn.f32()[i], base) << i;
      EXPECT_EQ(mx.f32()[i], base + 7.0f * (n - 1)) << i;
    }
  });
}

TEST_P(ThreadPG, AllreduceInt32Sum) {
  const int n = GetParam();
  run_ranks(n, [&](ProcessGroup& pg) {
    Tensor t = Tensor::from_vector({3}, std::vector<int32_t>{pg.rank(), -1, 1 << 20});
    pg.allreduce(t, ReduceOp::sum)->wait(kWait);
    const int32_t* p = t.data<int32_t>();
    EXPECT_EQ(p[0], n * (n - 1) / 2);
    EXPECT_EQ(p[1], -n);
    EXPECT_EQ(p[2], n << 20);
  });
}

TEST_P(ThreadPG, BroadcastFromEveryRoot) {
  const int n = GetParam();
  run_ranks(n, [&](ProcessGroup& pg) {
    for (int root = 0; root < n; ++root) {
      Tensor t = rank_values(pg.rank(), 5);
      pg.broadcast(t, root)->wait(kWait);
      EXPECT_EQ(t.to_vector(), rank_values(root, 5).to_vector()) << "root " << root;
    }
  });
}

TEST_P(ThreadPG, AllgatherPlacesRankBlocksInOrder) {
  const int n = GetParam();
  run_ranks(n, [&](ProcessGroup& pg) {
    Tensor in = rank_values(pg.rank(), 4);
    Tensor out = Tensor::zeros({int64_t(4 * n)});
    pg.allgather(in, out)->wait(kWait);
    // In place: the input is this rank's block of the output.
    Tensor out2 = Tensor::zeros({int64_t(4 * n)});
    Tensor mine = out2.view(4 * size_t(pg.rank()), {4});
    mine.copy_(in);
    pg.allgather(mine, out2)->wait(kWait);
    for (int r = 0; r < n; ++r) {
      auto want = rank_values(r, 4).to_vector();
      EXPECT_EQ(out.view(size_t(4 * r), {4}).to_vector(), want) << r;
      EXPECT_EQ(out2.view(size_t(4 * r), {4}).to_vector(), want) << r;
    }
  });
}

TEST_P(ThreadPG, OutOfOrderWaitsSeeEveryResult) {
  const int n = GetParam();
  run_ranks(n, [&](ProcessGroup& pg) {
    std::vector<Tensor> ts;
    std::vector<WorkPtr> works;
    for (int k = 0; k < 16; ++k) {
      ts.push_back(Tensor::zeros({int64_t(k + 1)}));
      ts.back().fill_(float(k + pg.rank()));
      works.push_back(pg.allreduce(ts.back(), ReduceOp::sum, "k" + std::to_string(k)));
    }
    works.push_back(pg.barrier());
    for (int k = int(works.size()) - 1; k >= 0; --k) works[size_t(k)]->wait(kWait);
    const int rank_sum = n * (n - 1) / 2;  // 0 + 1 + ... + (n - 1): exact
    for (int k = 0; k < 16; ++k) {
      float want = float(n * k + rank_sum);
      for (float v : ts[size_t(k)].to_vector()) EXPECT_EQ(v, want) << k;
      EXPECT_EQ(works[size_t(k)]->seq(), uint64_t(k + 1));
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Ranks, ThreadPG, ::testing::Values(1, 3, 4));

TEST(ThreadPGErrors, BadArgumentsThrowBeforeAnythingIsQueued) {
  ThreadWorld world(2);
  auto& pg = world.group(0);
  Tensor undefined, i32 = Tensor::zeros({3}, DType::i32), f = Tensor::zeros({3});
  Tensor wrong = Tensor::zeros({5});
  EXPECT_THROW(pg.allreduce(undefined, ReduceOp::sum), Error);
  EXPECT_THROW(pg.allreduce(i32, ReduceOp::avg), Error);
  EXPECT_THROW(pg.broadcast(f, 2), Error);
  EXPECT_THROW(pg.broadcast(f, -1), Error);
  EXPECT_THROW(pg.allgather(f, wrong), Error);
  // Nothing was queued: rank 0's next call is still collective #1.
  EXPECT_EQ(pg.barrier()->seq(), 1u);
}

TEST(ThreadPGErrors, MismatchFailsEveryRankNamingBothCalls) {
  std::vector<std::string> messages(2);
  run_ranks(2, [&](ProcessGroup& pg) {
    Tensor t = Tensor::zeros({4});
    auto w = pg.rank() == 0 ? pg.allreduce(t, ReduceOp::sum, "bucket 0")
                            : pg.broadcast(t, 0, "bucket 0");
    try {
      w->wait(kWait);
    } catch (const Error& e) {
      messages[size_t(pg.rank())] = e.what();
    }
    // Later collectives still match by number.
    Tensor one = Tensor::zeros({1});
    one.fill_(1);
    pg.allreduce(one, ReduceOp::sum)->wait(kWait);
    EXPECT_EQ(one.to_vector()[0], 2.0f);
  });
  for (const auto& m : messages) {
    EXPECT_NE(m.find("does not match"), std::string::npos) << m;
    EXPECT_NE(m.find("allreduce(sum) float32[4] 'bucket 0'"), std::string::npos) << m;
    EXPECT_NE(m.find("broadcast(root=0) float32[4] 'bucket 0'"), std::string::npos) << m;
  }
}

TEST(ThreadPGErrors, ARankThatThrowsReleasesTheOthersAndIsRethrown) {
  std::atomic<int> released{0};
  try {
    run_ranks(3, [&](ProcessGroup& pg) {
      if (pg.rank() == 1) throw Error("rank 1 gave up");
      Tensor t = Tensor::zeros({2});
      try {
        pg.allreduce(t, ReduceOp::sum)->wait(kWait);
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("rank 1 failed: rank 1 gave up"), std::string::npos)
            << e.what();
        ++released;
      }
    });
    FAIL() << "run_ranks did not rethrow";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "rank 1 gave up");
  }
  EXPECT_EQ(released.load(), 2);
}

TEST(ThreadPGErrors, WorkIsDoneOnlyWhenTheLastRankArrives) {
  ThreadWorld world(2);
  Tensor a = Tensor::zeros({1}), b = Tensor::zeros({1});
  a.fill_(1);
  b.fill_(2);
  auto wa = world.group(0).allreduce(a, ReduceOp::sum);
  EXPECT_FALSE(wa->done());
  EXPECT_EQ(a.to_vector()[0], 1.0f);
  auto wb = world.group(1).allreduce(b, ReduceOp::sum);
  wa->wait(kWait);
  wb->wait(kWait);
  EXPECT_EQ(a.to_vector()[0], 3.0f);
  EXPECT_EQ(b.to_vector()[0], 3.0f);
  EXPECT_LE(wa->enqueue_us(), wa->start_us());
}
