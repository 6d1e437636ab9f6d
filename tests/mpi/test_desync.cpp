// Desync detection on every path of the MPI backend (DESIGN.md, "Desync and hangs"): ranks
// that issue different collectives get, on every rank, the same dp::CollectiveError naming
// both sides, before any data moves; the group then refuses every later collective without
// communicating, so nothing hangs. With shared memory off (the MPI_Allreduce check in front
// of the ring, MPI_Allreduce, MPI_Bcast and MPI_Allgather) and on (the check inside the
// shared-memory barrier, including a shared-buffer all-reduce against an MPI one).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <mpi.h>
#include "runtime/comm/mpi_process_group.h"
#include "runtime/core/error.h"
#include "tests/support/mpi_ranks.h"

using namespace dp;

namespace {

class Desync : public ::testing::TestWithParam<bool> {
 protected:
  static MpiProcessGroupOptions options(bool shared) {
    MpiProcessGroupOptions o;
    o.shared_memory = shared;
    o.shm_timeout = std::chrono::seconds(60);  // a desync must be named, not time out
    return o;
  }
  void SetUp() override {
    if (test::world() < 2) GTEST_SKIP() << "needs two ranks to disagree";
  }
  // `w` must fail with the mismatch naming exactly `side0` (rank 0) and `side1` (rank 1).
  static void expect_mismatch(const WorkPtr& w, const std::string& side0,
                              const std::string& side1) {
    try {
      w->wait();
      ADD_FAILURE() << w->description() << " completed although the ranks disagree";
    } catch (const CollectiveError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("ranks disagree on a collective: rank 0 is in " + side0 +
                         " but rank 1 is in " + side1 + ". "),
                std::string::npos)
          << msg;
    }
  }
  // After a desync nothing runs, on any rank, and nothing waits.
  void expect_stopped() {
    Tensor t = Tensor::zeros({3});
    for (const WorkPtr& w : {pg.barrier("next"), pg.allreduce(t, ReduceOp::sum, "next")}) {
      try {
        w->wait();
        ADD_FAILURE() << w->description() << " ran after a desync";
      } catch (const CollectiveError& e) {
        EXPECT_NE(std::string(e.what()).find("not run: this process group stopped at collective"),
                  std::string::npos)
            << e.what();
      }
    }
  }

  MpiProcessGroup pg{MPI_COMM_WORLD, options(GetParam())};
  int rank = pg.rank();
  // On the shared path an all-reduce taken outside the shared buffers says so.
  std::string outside = GetParam() ? " outside shared memory" : "";
};

}  // namespace

TEST_P(Desync, ABucketAgainstTheStepLossNamesBothSides) {
  // The issue's example: rank 0 reduces a gradient bucket while the others reduce the loss.
  Tensor bucket = pg.allocate(1024);  // #1 (shared memory when on)
  Tensor loss = Tensor::zeros({1});
  const std::string shared0 = GetParam() ? " in shared buffer #0 at element 0" : "";
  WorkPtr w = rank == 0 ? pg.allreduce(bucket, ReduceOp::avg, "bucket 3")
                        : pg.allreduce(loss, ReduceOp::avg, "step loss");
  const uint64_t n = GetParam() ? 2 : 1;  // allocate() is a collective only on the shared path
  const std::string id = "#" + std::to_string(n) + " ";
  expect_mismatch(w, id + "allreduce(avg) float32[1024] 'bucket 3'" + shared0,
                  id + "allreduce(avg) float32[1] 'step loss'" + outside);
  expect_stopped();
}

TEST_P(Desync, SameSizeDifferentBucketOnTheRingIsCaught) {
  // 1 MB each: the ring (or the shared path) would happily add bucket 3 to bucket 4.
  Tensor t = Tensor::zeros({262144});
  const std::string tag = rank == 0 ? "bucket 3" : "bucket 4";
  expect_mismatch(pg.allreduce(t, ReduceOp::avg, tag),
                  "#1 allreduce(avg) float32[262144] 'bucket 3'" + outside,
                  "#1 allreduce(avg) float32[262144] 'bucket 4'" + outside);
  expect_stopped();
}

TEST_P(Desync, DifferentKindsAreCaught) {
  const int64_t world = pg.size();
  Tensor a = Tensor::zeros({10}), all = Tensor::zeros({10 * world});
  pg.barrier("in step")->wait();  // #1: agreed
  WorkPtr w = rank == 0 ? pg.broadcast(a, 0, "buffers") : pg.allgather(a, all, "eval totals");
  expect_mismatch(
      w, "#2 broadcast(root=0) float32[10] 'buffers'",
      "#2 allgather float32[10] -> float32[" + std::to_string(10 * world) + "] 'eval totals'");
  expect_stopped();
}

TEST_P(Desync, ACollectiveOnlyOneRankIssuesIsCaughtAtOnce) {
  // Rank 0 waits at a barrier the others never call: it meets their all-reduce instead.
  Tensor t = Tensor::zeros({4});
  WorkPtr w = rank == 0 ? pg.barrier("only rank 0") : pg.allreduce(t, ReduceOp::sum, "step loss");
  expect_mismatch(w, "#1 barrier 'only rank 0'",
                  "#1 allreduce(sum) float32[4] 'step loss'" + outside);
  expect_stopped();
}

TEST_P(Desync, ALargeAllReduceAgainstASmallOneIsCaught) {
  // With two ranks an 80 KB float32 all-reduce carries the check in its first half exchange
  // (FusedCheck::run_pair); its message still pairs with a small all-reduce's or a barrier's.
  Tensor big = Tensor::zeros({20001}), small = Tensor::zeros({10});
  WorkPtr w = rank == 0 ? pg.allreduce(big, ReduceOp::sum, "bucket 0")
                        : pg.allreduce(small, ReduceOp::sum, "step loss");
  expect_mismatch(w, "#1 allreduce(sum) float32[20001] 'bucket 0'" + outside,
                  "#1 allreduce(sum) float32[10] 'step loss'" + outside);
  expect_stopped();
}

TEST_P(Desync, ALargeAllReduceAgainstABarrierIsCaught) {
  Tensor big = Tensor::zeros({20001});
  WorkPtr w = rank == 0 ? pg.barrier("eval") : pg.allreduce(big, ReduceOp::avg, "bucket 0");
  expect_mismatch(w, "#1 barrier 'eval'", "#1 allreduce(avg) float32[20001] 'bucket 0'" + outside);
  expect_stopped();
}

TEST_P(Desync, AgreeingRanksPassTheCheck) {
  // Every input differs between the ranks: a collective that did not run leaves a wrong value.
  Tensor t = Tensor::zeros({1000}), big = Tensor::zeros({100000}), b = Tensor::zeros({1000});
  t.fill_(float(rank));
  big.fill_(float(rank + 1));
  b.fill_(float(10 + rank));
  pg.allreduce(t, ReduceOp::sum, "small")->wait();    // MPI_Allreduce
  pg.allreduce(big, ReduceOp::avg, "large")->wait();  // the ring
  pg.broadcast(b, 1, "bcast")->wait();
  pg.barrier("end")->wait();
  const int world = pg.size();
  const int rank_sum = world * (world - 1) / 2;  // 0 + 1 + ... + (world - 1): exact
  EXPECT_EQ(t.f32()[999], float(rank_sum));
  EXPECT_FLOAT_EQ(big.f32()[12345], float(world + 1) / 2);
  EXPECT_EQ(b.f32()[999], 11.0f);
}

INSTANTIATE_TEST_SUITE_P(SharedMemory, Desync, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "shm_on" : "shm_off"; });

// Ranks that would build their groups differently (an MPMD launch with different options)
// would pair the set-up's collectives wrongly: a hang, or a raw MPI error on some ranks.
// Every rank is told which setting differs instead, while the group is being built.
TEST(DifferentSettings, AreNamedOnEveryRankWhileTheGroupIsBuilt) {
  const int world = test::world(), me = test::rank();
  if (world < 2) GTEST_SKIP() << "needs two ranks to disagree";
  const std::string last = std::to_string(world - 1);
  struct Case {
    std::string want;
    std::function<void(MpiProcessGroupOptions&)> on_last_rank;
  };
  std::vector<Case> cases = {
      {"--allreduce-algo is 'auto' on rank 0 but 'flat' on rank " + last,
       [](MpiProcessGroupOptions& o) { o.allreduce_algo = AllreduceAlgo::flat; }},
      {"--no-shm is 'off' on rank 0 but 'on' on rank " + last,
       [](MpiProcessGroupOptions& o) { o.shared_memory = false; }},
  };
  if (!std::getenv("DPRUN_NODE_SPLIT")) {
    cases.push_back({"DPRUN_NODE_SPLIT is 'unset' on rank 0 but '2' on rank " + last,
                     [](MpiProcessGroupOptions& o) { o.node_split = 2; }});
  }
  for (const Case& c : cases) {
    MpiProcessGroupOptions o;
    if (me == world - 1) c.on_last_rank(o);
    try {
      MpiProcessGroup pg(MPI_COMM_WORLD, o);
      ADD_FAILURE() << "built a group although " << c.want;
    } catch (const CollectiveError& e) {
      EXPECT_NE(
          std::string(e.what()).find("the ranks were started with different settings: " + c.want),
          std::string::npos)
          << e.what();
    }
  }
  MpiProcessGroup agreed(MPI_COMM_WORLD);  // the failed ones left nothing behind
  agreed.barrier("after")->wait();
}
