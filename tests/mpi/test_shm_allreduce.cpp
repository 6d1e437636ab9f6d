// ProcessGroup::allocate() and the shared-memory all-reduce of the MPI backend, under mpirun
// with 1, 2 and 4 ranks (one node: with more than one rank the shared path is on). Every
// result is compared with the exact bits of the documented summation order (rank 0 + rank
// 1 + ... in float, then times 1/n for avg), and with every other rank's bits.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <mpi.h>
#include <sys/resource.h>
#include <unistd.h>
#include "runtime/comm/mpi_process_group.h"
#include "runtime/core/clock.h"
#include "runtime/core/error.h"
#include "tests/support/mpi_ranks.h"

using namespace dp;

namespace {

const std::vector<size_t> kOddSizes = {1, 7, 1000, 65537, 262147};

// Small integers: every sum is exact, whatever the order.
float int_value(int rank, size_t i, int round = 0) {
  return float(int((i * 7 + size_t(round) * 13) % 1021) - 510 + 3 * rank);
}

// Values whose float sum depends on the order of addition.
float messy_value(int rank, size_t i) {
  return std::sin(0.37f * float(i) + 1.3f * float(rank)) * std::pow(10.0f, float(rank % 3) - 1);
}

// The documented result: ((v_0 + v_1) + v_2) + ... in float, then * (1/n) for avg.
float reference(const std::function<float(int, size_t)>& v, int world, size_t i, bool avg) {
  float s = v(0, i);
  for (int r = 1; r < world; ++r) s += v(r, i);
  return avg ? s * (1.0f / float(world)) : s;
}

void fill(Tensor& t, const std::function<float(size_t)>& v) {
  float* p = t.f32();
  for (size_t i = 0; i < t.numel(); ++i) p[i] = v(i);
}

// Bitwise, without a gtest line per element.
void expect_bits(const Tensor& t, const std::function<float(size_t)>& want,
                 const std::string& what) {
  const float* p = t.f32();
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < t.numel(); ++i) {
    const float w = want(i);
    // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): bit identity, NaN and -0 too
    if (std::memcmp(&p[i], &w, sizeof(float)) != 0 && bad++ == 0) first = i;
  }
  EXPECT_EQ(bad, 0u) << what << " " << t.str() << ": first at " << first << " got " << p[first]
                     << " want " << want(first);
}

// Every rank holds exactly rank 0's bits.
void expect_same_bits_on_every_rank(const Tensor& t, const std::string& what) {
  std::vector<float> root = t.to_vector();
  MPI_Bcast(root.data(), int(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  EXPECT_EQ(std::memcmp(root.data(), t.f32(), t.nbytes()), 0) << what << ": differs from rank 0";
}

class SharedAllreduce : public ::testing::TestWithParam<bool> {
 protected:
  static MpiProcessGroupOptions options(bool shared) {
    MpiProcessGroupOptions o;
    o.shared_memory = shared;
    return o;
  }
  MpiProcessGroup pg{MPI_COMM_WORLD, options(GetParam())};
  int rank = pg.rank();
  int world = pg.size();
};

}  // namespace

TEST_P(SharedAllreduce, SharedPathIsOnExactlyWhenAskedAndUseful) {
  // mpirun here starts every rank on this one node.
  EXPECT_EQ(pg.uses_shared_memory(), GetParam() && world > 1);
}

TEST_P(SharedAllreduce, AllocateGivesZeroedBuffersOfTheRequestedSize) {
  for (size_t n : kOddSizes) {
    Tensor t = pg.allocate(n);
    ASSERT_EQ(t.numel(), n);
    EXPECT_EQ(t.dtype(), DType::f32);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u) << "cache-line aligned";
    expect_bits(
        t, [](size_t) { return 0.0f; }, "fresh");
  }
  Tensor i = pg.allocate(9, DType::i32);
  EXPECT_EQ(i.str(), "int32[9]");
  for (int k = 0; k < 9; ++k) EXPECT_EQ(i.data<int32_t>()[k], 0);
  EXPECT_EQ(pg.allocate(0).numel(), 0u);
}

TEST_P(SharedAllreduce, SumAndAvgOnOddSizesAreExactAndIdenticalOnEveryRank) {
  for (size_t n : kOddSizes) {
    Tensor sum = pg.allocate(n), avg = pg.allocate(n);
    fill(sum, [&](size_t i) { return int_value(rank, i); });
    fill(avg, [&](size_t i) { return int_value(rank, i); });
    auto ws = pg.allreduce(sum, ReduceOp::sum, "sum");
    auto wa = pg.allreduce(avg, ReduceOp::avg, "avg");
    ws->wait();
    wa->wait();
    auto v = [](int r, size_t i) { return int_value(r, i); };
    expect_bits(
        sum, [&](size_t i) { return reference(v, world, i, false); }, "sum");
    expect_bits(
        avg, [&](size_t i) { return reference(v, world, i, true); }, "avg");
    expect_same_bits_on_every_rank(sum, "sum");
    expect_same_bits_on_every_rank(avg, "avg");
  }
}

TEST_P(SharedAllreduce, FixedSummationOrderMakesItDeterministic) {
  const size_t n = 65537;
  Tensor t = pg.allocate(n);
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    for (bool avg : {false, true}) {
      fill(t, [&](size_t i) { return messy_value(rank, i); });
      pg.allreduce(t, avg ? ReduceOp::avg : ReduceOp::sum, "messy")->wait();
      if (pg.uses_shared_memory()) {
        // The shared path promises the rank order; the others only bitwise agreement.
        expect_bits(
            t, [&](size_t i) { return reference(messy_value, world, i, avg); }, "order");
      }
      expect_same_bits_on_every_rank(t, "messy");
      if (!avg && run == 0) first = t.to_vector();
      if (!avg && run == 1) {
        EXPECT_EQ(std::memcmp(first.data(), t.f32(), t.nbytes()), 0) << "run to run";
      }
    }
  }
}

TEST_P(SharedAllreduce, ManyConsecutiveAllreducesOnSeveralBuffersAndViews) {
  std::vector<Tensor> bufs = {pg.allocate(1000), pg.allocate(65537), pg.allocate(300)};
  // Views at odd offsets, the way bucket buffers are views of the Reducer's arena.
  Tensor whole = pg.allocate(5000);
  std::vector<Tensor> ts = {bufs[0],
                            bufs[1],
                            bufs[2],
                            whole.view(3, {1001}),
                            whole.view(1004, {7}),
                            whole.view(2048, {2952})};
  for (int round = 0; round < 40; ++round) {
    std::vector<WorkPtr> works;
    for (size_t k = 0; k < ts.size(); ++k) {
      fill(ts[k], [&](size_t i) { return int_value(rank, i, round + int(k)); });
      works.push_back(pg.allreduce(ts[k], round % 2 ? ReduceOp::avg : ReduceOp::sum,
                                   "buffer " + std::to_string(k)));
    }
    for (size_t k = 0; k < ts.size(); ++k) {
      works[k]->wait();
      auto v = [&](int r, size_t i) { return int_value(r, i, round + int(k)); };
      expect_bits(
          ts[k], [&](size_t i) { return reference(v, world, i, round % 2); },
          "round " + std::to_string(round) + " buffer " + std::to_string(k));
    }
    if (HasFailure()) break;
  }
  // The bytes between the views were never part of a collective: still zero.
  EXPECT_EQ(whole.f32()[0], 0.0f);
  EXPECT_EQ(whole.f32()[1011], 0.0f);
  EXPECT_EQ(whole.f32()[2047], 0.0f);
}

TEST_P(SharedAllreduce, InterleavesWithOrdinaryCollectives) {
  Tensor shared = pg.allocate(70000);
  Tensor ordinary = Tensor::zeros({70000});
  Tensor minmax = pg.allocate(100);
  Tensor labels = pg.allocate(50, DType::i32);
  Tensor gathered = Tensor::zeros({int64_t(100) * world});
  for (int round = 0; round < 5; ++round) {
    fill(shared, [&](size_t i) { return int_value(rank, i, round); });
    fill(ordinary, [&](size_t i) { return int_value(rank, i, round + 1); });
    fill(minmax, [&](size_t i) { return int_value(rank, i, round + 2); });
    for (int k = 0; k < 50; ++k) labels.data<int32_t>()[k] = rank * 100 + k;
    auto w1 = pg.allreduce(shared, ReduceOp::avg, "shared");
    auto w2 = pg.allreduce(ordinary, ReduceOp::sum, "ordinary");
    auto w3 = pg.allreduce(minmax, ReduceOp::max, "max on a shared buffer");
    auto w4 = pg.allreduce(labels, ReduceOp::sum, "int32 on a shared buffer");
    auto w5 = pg.barrier("between");
    auto w6 = pg.allgather(minmax, gathered, "gather from a shared buffer");
    auto w7 = pg.broadcast(shared, world - 1, "broadcast a shared buffer");
    for (auto& w : {w1, w2, w3, w4, w5, w6, w7}) w->wait();
    auto v = [&](int dr, int r, size_t i) { return int_value(r, i, round + dr); };
    expect_bits(
        shared,
        [&](size_t i) {
          return reference([&](int r, size_t j) { return v(0, r, j); }, world, i, true);
        },
        "shared avg");
    expect_bits(
        ordinary,
        [&](size_t i) {
          return reference([&](int r, size_t j) { return v(1, r, j); }, world, i, false);
        },
        "ordinary sum");
    expect_bits(
        minmax, [&](size_t i) { return v(2, world - 1, i); }, "max");  // grows with rank
    expect_bits(
        gathered, [&](size_t i) { return v(2, world - 1, i % 100); }, "allgather");
    for (int k = 0; k < 50; ++k) {
      EXPECT_EQ(labels.data<int32_t>()[k], 100 * world * (world - 1) / 2 + world * k);
    }
  }
}

TEST_P(SharedAllreduce, DisagreeingRanksAllGetTheSameErrorAndTheGroupStops) {
  if (!pg.uses_shared_memory()) GTEST_SKIP() << "the check belongs to the shared path";
  Tensor t = pg.allocate(64);
  Tensor mine = t.view(size_t(rank), {8});  // a different view on every rank
  try {
    pg.allreduce(mine, ReduceOp::sum, "skewed")->wait();
    ADD_FAILURE() << "ranks reducing different views were not detected";
  } catch (const CollectiveError& e) {  // every rank alike: the job can end cleanly
    EXPECT_NE(std::string(e.what()).find("ranks disagree"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(
                  "rank 0 is in #2 allreduce(sum) float32[8] 'skewed' in shared buffer #0 at "
                  "element 0 but rank 1 is in #2 allreduce(sum) float32[8] 'skewed' in shared "
                  "buffer #0 at element 1"),
              std::string::npos)
        << e.what();
  }
  // The ranks no longer issue the same sequence: nothing more runs, on any rank, and nothing
  // waits for a peer.
  try {
    pg.allreduce(t, ReduceOp::sum, "after")->wait();
    ADD_FAILURE() << "a collective ran after a desync";
  } catch (const CollectiveError& e) {
    EXPECT_NE(std::string(e.what()).find("#3 (allreduce(sum) float32[64] 'after'): not run: "
                                         "this process group stopped at collective #2"),
              std::string::npos)
        << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(SharedMemory, SharedAllreduce, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "on" : "off"; });

// Every later collective of a poisoned group fails on this rank, naming the poisoning
// timeout (collective #`seq`, at `barrier`), whatever path it would take.
void expect_poisoned_from_now_on(MpiProcessGroup& pg, Tensor& shared, uint64_t seq,
                                 const std::string& barrier) {
  Tensor ordinary = Tensor::zeros({10});
  const std::string cause = "gave up waiting at " + barrier;
  const std::string where = "of collective #" + std::to_string(seq) + " allreduce(sum)";
  for (const WorkPtr& w : {pg.barrier("recovered?"), pg.allreduce(shared, ReduceOp::avg, "shared"),
                           pg.allreduce(ordinary, ReduceOp::sum, "ordinary"),
                           pg.broadcast(ordinary, 0, "broadcast")}) {
    try {
      w->wait();
      ADD_FAILURE() << w->description() << " completed on a poisoned group";
    } catch (const CollectiveTimeout& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("the shared-memory group is poisoned: rank "), std::string::npos) << msg;
      EXPECT_NE(msg.find(cause), std::string::npos) << msg;
      EXPECT_NE(msg.find(where), std::string::npos) << msg;
      EXPECT_NE(msg.find("partial sums on every rank"), std::string::npos) << msg;
    }
  }
}

TEST(SharedAllreduceTimeout, ALateRankMakesTheOthersFailAndPoisonsTheGroup) {
  MpiProcessGroupOptions o;
  o.shm_timeout = std::chrono::milliseconds(300);
  MpiProcessGroup pg(MPI_COMM_WORLD, o);
  if (!pg.uses_shared_memory()) GTEST_SKIP() << "needs 2 or more ranks on one node";
  const int rank = pg.rank();
  Tensor t = pg.allocate(1000);   // #1
  pg.barrier("line up")->wait();  // #2
  // Rank 0 comes 2 s late: far past the others' 0.3 s, so they have given up (and
  // poisoned the group) when it arrives.
  if (rank == 0) std::this_thread::sleep_for(std::chrono::seconds(2));
  const double t0 = now_us();
  WorkPtr w = pg.allreduce(t, ReduceOp::sum, "bucket 7");  // #3
  try {
    w->wait();
    ADD_FAILURE() << "the all-reduce completed although a rank was 2 s late";
  } catch (const CollectiveTimeout& e) {
    const std::string msg = e.what();
    const double waited_s = (now_us() - t0) / 1e6;
    EXPECT_NE(msg.find("'bucket 7'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("barrier 1 of 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("0.3 s"), std::string::npos) << msg;
    const bool poisoned = msg.find("the shared-memory group is poisoned") != std::string::npos;
    const bool waited =
        msg.find("rank 0 (last seen in collective #2) did not arrive") != std::string::npos &&
        msg.find("This timeout poisons the shared-memory group") != std::string::npos;
    if (rank == 0) {  // it never arrives: the group was poisoned before
      EXPECT_TRUE(poisoned) << msg;
    } else {  // with more than two ranks, a rank still waiting may see another's poison first
      EXPECT_TRUE(waited || (pg.size() > 2 && poisoned)) << msg;
    }
    // A rank that waited keeps its note past the barrier's end: the Work fails only after
    // that, and a caller's wait() whose deadline falls in between reads the note alone.
    if (waited) {
      EXPECT_NE(msg.find("its communication thread gave up waiting in shared memory for rank 0 "
                         "to arrive at barrier 1 of 2"),
                std::string::npos)
          << msg;
    }
    EXPECT_LT(waited_s, 1.5) << "gave up only after " << waited_s << " s: " << msg;
  }
  expect_poisoned_from_now_on(pg, t, 3, "barrier 1 of 2");
}

// A barrier's own timeout replaces the group's for that barrier alone, on both paths: a rank
// 1 s late (after a long local phase, such as every rank sampling text) is waited out there,
// where the group's 0.3 s would have poisoned the group, and the group stays healthy.
TEST(SharedAllreduceTimeout, ABarriersOwnTimeoutWaitsOutALateRankAndKeepsTheGroup) {
  for (const bool shared : {true, false}) {
    MpiProcessGroupOptions o;
    o.shared_memory = shared;
    o.shm_timeout = o.timeout = std::chrono::milliseconds(300);
    MpiProcessGroup pg(MPI_COMM_WORLD, o);
    if (pg.size() < 2) GTEST_SKIP() << "needs 2 or more ranks";
    SCOPED_TRACE(shared ? "shared memory" : "MPI");
    Tensor t = pg.allocate(1000);
    pg.barrier("line up")->wait();
    if (pg.rank() == 0) std::this_thread::sleep_for(std::chrono::seconds(1));
    WorkPtr w = pg.barrier("end of a long local phase", std::chrono::seconds(20));
    EXPECT_EQ(w->timeout(), std::chrono::seconds(20));
    EXPECT_NO_THROW(w->wait());
    fill(t, [&](size_t i) { return int_value(pg.rank(), i); });
    EXPECT_NO_THROW(pg.allreduce(t, ReduceOp::sum, "after")->wait());
    auto v = [](int r, size_t i) { return int_value(r, i); };
    expect_bits(
        t, [&](size_t i) { return reference(v, pg.size(), i, false); }, "after");
    EXPECT_EQ(pg.barrier("plain")->timeout(), std::chrono::milliseconds(300));
    pg.barrier("done")->wait();
  }
}

// A barrier that gave up after its own timeout poisons the group with that timeout: the
// later collectives' messages quote it, not the group's.
TEST(SharedAllreduceTimeout, APoisonedGroupQuotesTheTimeoutThePoisonerWaited) {
  MpiProcessGroupOptions o;
  o.shm_timeout = o.timeout = std::chrono::milliseconds(300);
  MpiProcessGroup pg(MPI_COMM_WORLD, o);
  if (!pg.uses_shared_memory()) GTEST_SKIP() << "needs 2 or more ranks on one node";
  Tensor t = pg.allocate(1000);
  pg.barrier("line up")->wait();
  if (pg.rank() == 0) std::this_thread::sleep_for(std::chrono::seconds(2));
  WorkPtr w = pg.barrier("end of a long local phase", std::chrono::milliseconds(700));
  EXPECT_THROW(w->wait(std::chrono::seconds(30)), CollectiveTimeout);
  try {
    pg.allreduce(t, ReduceOp::sum, "after")->wait();
    ADD_FAILURE() << "an all-reduce completed on a poisoned group";
  } catch (const CollectiveTimeout& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("the shared-memory group is poisoned: rank "), std::string::npos) << msg;
    EXPECT_NE(msg.find("end of a long local phase"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(timeout 0.7 s)"), std::string::npos) << msg;
  }
}

// Both deadlines are dprun's --timeout, and the caller's wait() usually gives up before the
// barrier does (on a loaded machine, either may): its error must name the late rank too. Here
// the barrier's own deadline is far off, so only the caller's fires.
TEST(SharedAllreduceTimeout, AWaitThatGivesUpBeforeTheBarrierNamesTheLateRank) {
  MpiProcessGroupOptions o;
  o.shm_timeout = std::chrono::seconds(60);
  MpiProcessGroup pg(MPI_COMM_WORLD, o);
  if (!pg.uses_shared_memory()) GTEST_SKIP() << "needs 2 or more ranks on one node";
  const int rank = pg.rank(), late = pg.size() - 1;
  Tensor t = pg.allocate(1000);   // #1
  pg.barrier("line up")->wait();  // #2
  if (rank == late) std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  WorkPtr w = pg.allreduce(t, ReduceOp::sum, "bucket 7");  // #3
  if (rank != late) {
    try {
      w->wait(std::chrono::milliseconds(500));
      ADD_FAILURE() << "the all-reduce completed although rank " << late << " was 2 s late";
    } catch (const CollectiveTimeout& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("did not complete within 0.5 s"), std::string::npos) << msg;
      EXPECT_NE(msg.find("its communication thread waits in shared memory for rank " +
                         std::to_string(late) + " to arrive at barrier 1 of 2"),
                std::string::npos)
          << msg;
    }
  }
  w->wait();  // the late rank arrives after all: the all-reduce completes everywhere
  pg.barrier("done")->wait();
}

// The uneven case (issue 10): one rank is late at barrier 2 only, the others give up there
// and go on to their next queued all-reduce. Before poisoning, that next arrival completed
// the late rank's barrier 2: its all-reduce returned "ok" with slices nobody reduced, and
// from then on the ranks paired different collectives. DPRUN_FAULT_SHM_STALL holds rank 1
// 1 s before barrier 2 of #4: long after the others' 0.3 s timeout (a margin for a loaded
// machine), while they still wait at barrier 1 of one of the eight all-reduces queued
// behind it (each of which would have waited 0.3 s without poisoning).
TEST(SharedAllreduceTimeout, ARankLateAtBarrier2PoisonsTheGroupOnEveryRank) {
  const int world = test::world(), me = test::rank();
  if (world < 2) GTEST_SKIP() << "needs 2 or more ranks on one node";
  MpiProcessGroupOptions o;
  o.shm_timeout = std::chrono::milliseconds(300);
  if (me == 1) {
    o.shm_timeout = std::chrono::seconds(30);  // it never gives up itself: only the others
    setenv("DPRUN_FAULT_SHM_STALL", "rank=1,seq=4,barrier=2,ms=1000", 1);
  }
  MpiProcessGroup pg(MPI_COMM_WORLD, o);
  unsetenv("DPRUN_FAULT_SHM_STALL");
  ASSERT_TRUE(pg.uses_shared_memory());
  Tensor a = pg.allocate(1000), b = pg.allocate(1000);  // #1, #2
  fill(a, [&](size_t i) { return int_value(me, i); });
  fill(b, [&](size_t i) { return int_value(me, i, 1); });
  pg.barrier("line up")->wait();                                              // #3
  std::vector<WorkPtr> works = {pg.allreduce(a, ReduceOp::sum, "bucket 7")};  // #4: rank 1 late
  for (int k = 0; k < 8; ++k) works.push_back(pg.allreduce(b, ReduceOp::sum, "next"));  // #5..#12
  const WorkPtr w4 = works.front();
  for (const WorkPtr& w : works) {
    try {
      w->wait();
      ADD_FAILURE() << w->description() << " completed 'ok' on rank " << me
                    << " although a rank gave up on #4 at barrier 2";
    } catch (const CollectiveTimeout& e) {
      const std::string msg = e.what();
      const bool waited = msg.find(
                              "rank 1 (still reducing its slice) did not arrive within "
                              "0.3 s at barrier 2 of 2") != std::string::npos;
      const bool poisoned =
          msg.find("the shared-memory group is poisoned") != std::string::npos &&
          msg.find(
              "gave up waiting at barrier 2 of 2 (all slices reduced) of collective #4 "
              "allreduce(sum) float32[1000] 'bucket 7'") != std::string::npos &&
          msg.find("poisoned: rank 1 ") == std::string::npos;  // rank 1 never gave up
      if (w == w4 && me != 1) {
        // A rank that gave up names the one it waited for; with more than two ranks, one
        // that was still waiting may see another's poison first.
        EXPECT_TRUE(waited || (world > 2 && poisoned)) << msg;
      } else {  // the late rank, and everyone's next collective: poisoned, naming the cause
        EXPECT_TRUE(poisoned) << msg;
      }
    }
  }
  expect_poisoned_from_now_on(pg, a, 4, "barrier 2 of 2");
}

TEST(SharedAllreduceSetup, BuffersOfSeveralGroupsAreIndependent) {
  // Two groups on the same ranks: each reduces only in its own windows.
  MpiProcessGroup a(MPI_COMM_WORLD), b(MPI_COMM_WORLD);
  const int rank = a.rank(), world = a.size();
  Tensor ta = a.allocate(4096), tb = b.allocate(4096);
  fill(ta, [&](size_t i) { return int_value(rank, i); });
  fill(tb, [&](size_t i) { return int_value(rank, i, 1); });
  auto wa = a.allreduce(ta, ReduceOp::sum, "a");
  auto wb = b.allreduce(tb, ReduceOp::sum, "b");
  wa->wait();
  wb->wait();
  auto va = [](int r, size_t i) { return int_value(r, i); };
  auto vb = [](int r, size_t i) { return int_value(r, i, 1); };
  expect_bits(
      ta, [&](size_t i) { return reference(va, world, i, false); }, "group a");
  expect_bits(
      tb, [&](size_t i) { return reference(vb, world, i, false); }, "group b");
  // A buffer of group a given to group b is an ordinary tensor there: still correct.
  fill(ta, [&](size_t i) { return int_value(rank, i, 2); });
  b.allreduce(ta, ReduceOp::sum, "a's buffer in b")->wait();
  auto vc = [](int r, size_t i) { return int_value(r, i, 2); };
  expect_bits(
      ta, [&](size_t i) { return reference(vc, world, i, false); }, "cross");
}

TEST(SharedAllreduceSetup, AWindowBeyondTheAddressSpaceLimitIsRefusedBeforeMpiMapsIt) {
  // Open MPI maps the whole window into every rank; past ulimit -v its mmap fails and the
  // window's backing file stays in /dev/shm after the job. Refused first, nothing is created.
  MpiProcessGroup pg(MPI_COMM_WORLD);
  if (!pg.uses_shared_memory()) GTEST_SKIP() << "needs 2 or more ranks on one node";
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_AS, &saved), 0);
  size_t pages = 0;
  {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fscanf(f, "%zu", &pages), 1);
    std::fclose(f);
  }
  // Only the last rank is limited: the others must refuse with it, not enter MPI's
  // collective allocation alone (and hang there).
  const bool limited = pg.rank() == pg.size() - 1;
  const size_t headroom = size_t(256) << 20;
  rlimit low = saved;
  low.rlim_cur = rlim_t(pages * size_t(sysconf(_SC_PAGESIZE)) + headroom);
  if (limited) {
    ASSERT_EQ(setrlimit(RLIMIT_AS, &low), 0);
  }
  std::string message;
  try {
    pg.allocate((size_t(192) << 20) / sizeof(float));  // 192 MB a rank: over 256 MB in all
  } catch (const Error& e) {
    message = e.what();
  }
  ASSERT_EQ(setrlimit(RLIMIT_AS, &saved), 0);
  EXPECT_NE(message.find(limited ? "this rank's address-space limit (ulimit -v)"
                                 : "another rank of this node cannot map all of them"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("--no-shm"), std::string::npos) << message;
  // The group goes on: nothing was half created.
  Tensor t = pg.allocate(1000);
  fill(t, [&](size_t i) { return int_value(pg.rank(), i); });
  pg.allreduce(t, ReduceOp::sum, "after the refusal")->wait();
  auto v = [](int r, size_t i) { return int_value(r, i); };
  expect_bits(
      t, [&](size_t i) { return reference(v, pg.size(), i, false); }, "after the refusal");
}

TEST(SharedAllreduceSetup, TimeoutMustBePositive) {
  MpiProcessGroupOptions o;
  o.shm_timeout = std::chrono::milliseconds(0);
  EXPECT_THROW(MpiProcessGroup pg(MPI_COMM_WORLD, o), Error);
}
