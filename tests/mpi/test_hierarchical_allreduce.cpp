// The hierarchical all-reduce of the MPI backend (runtime/comm/hierarchical_allreduce.h) on
// one host: MpiProcessGroupOptions::node_split makes "nodes" of K consecutive ranks (the
// windows are still real shared memory). Under mpirun with 4 ranks: 2 nodes x 2; with 6
// ranks: 3 nodes x 2 (the ring across nodes) and 2 nodes x 3. Other world sizes skip.
//
// Results are compared with the exact bits of the documented order: per node
// ((v_{n,0} + v_{n,1}) + ...) in float32, across 2 nodes node 0 + node 1, avg times 1/world
// once, 16-bit rounded once; with 3 nodes the ring's order and for tiny all-reduces (inside the
// MPI desync check) MPI's, so there random data is compared with that sum within a tight
// tolerance. Every rank must hold rank 0's bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <mpi.h>
#include "runtime/comm/mpi_process_group.h"
#include "runtime/core/error.h"
#include "runtime/core/half_float.h"
#include "tests/support/mpi_ranks.h"

using namespace dp;

namespace {

// Sizes around every edge: empty, one element, fewer than L cache lines (the last local
// ranks' slices are empty), not divisible by L or by the node count, the tiny path's limit
// (256 floats) and just above it, and a few MB.
const std::vector<size_t> kSizes = {0, 1, 7, 31, 255, 256, 257, 1000, 4099, 65537, 262147};
constexpr size_t kTinyBytes = 1024;  // what the fixture lets ride in the desync check

float int_value(int rank, size_t i) {
  return float(int((i * 7 + size_t(rank) * 13) % 1021) - 510 + 3 * rank);
}
float messy_value(int rank, size_t i) {
  return std::sin(0.37f * float(i) + 1.3f * float(rank)) * std::pow(10.0f, float(rank % 3) - 1);
}

class Hierarchical : public ::testing::TestWithParam<int> {
 public:  // half_case() below reads them too
  void SetUp() override {
    const int world = test::world(), k = GetParam();
    if (world % k != 0 || world / k < 2) {
      GTEST_SKIP() << "needs at least 2 nodes of " << k << " ranks (world " << world << ")";
    }
    MpiProcessGroupOptions o;
    o.node_split = k;
    o.allreduce_algo = AllreduceAlgo::hierarchical;
    o.shm_timeout = std::chrono::seconds(60);
    o.hierarchical_min_bytes = 0;    // every size above the tiny ones hierarchical
    o.fused_max_bytes = kTinyBytes;  // and the tiny ones tiny: the sliced path from 257 floats
    pg = std::make_unique<MpiProcessGroup>(MPI_COMM_WORLD, o);
    rank = pg->rank();
    world_ = pg->size();
    local = k;
    nodes = world_ / k;
    ASSERT_TRUE(pg->hierarchical());
    ASSERT_TRUE(pg->uses_shared_memory());
  }

  // The documented float32 result for element i; `wire` rounds each node's sum as 2 nodes
  // send 16-bit slices.
  float reference(const std::function<float(int, size_t)>& v, size_t i, bool avg,
                  const std::function<float(float)>& wire = nullptr) const {
    std::vector<float> node(size_t(nodes), 0.0f);
    for (int n = 0; n < nodes; ++n) {
      float s = v(n * local, i);
      for (int l = 1; l < local; ++l) s += v(n * local + l, i);
      node[size_t(n)] = wire && nodes == 2 ? wire(s) : s;
    }
    float s = node[0];
    for (int n = 1; n < nodes; ++n) s += node[size_t(n)];  // exact order only for 2 nodes
    return avg ? s * (1.0f / float(world_)) : s;
  }

  // Whether the documented order applies: 2 nodes (more: the ring's order), and not a tiny
  // all-reduce (n float32 values within kTinyBytes ride in the desync check: recursive
  // doubling's order).
  bool exact_order(size_t n) const { return nodes == 2 && n * sizeof(float) > kTinyBytes; }

  void expect_same_bits_on_every_rank(const Tensor& t, const std::string& what) {
    std::vector<char> root(t.nbytes());
    if (!root.empty()) std::memcpy(root.data(), t.raw(), t.nbytes());
    MPI_Bcast(root.data(), int(root.size()), MPI_BYTE, 0, MPI_COMM_WORLD);
    EXPECT_TRUE(root.empty() || std::memcmp(root.data(), t.raw(), t.nbytes()) == 0)
        << what << ": differs from rank 0";
  }

  std::unique_ptr<MpiProcessGroup> pg;
  int rank = 0, world_ = 1, local = 1, nodes = 1;
};

TEST_P(Hierarchical, IntegerValuesSumAndAverageExactly) {
  for (bool avg : {false, true}) {
    for (size_t n : kSizes) {
      Tensor t = pg->allocate(std::max<size_t>(n, 1));
      Tensor v = t.view(0, {int64_t(n)});
      for (size_t i = 0; i < n; ++i) v.f32()[i] = int_value(rank, i);
      pg->allreduce(v, avg ? ReduceOp::avg : ReduceOp::sum, "ints")->wait();
      size_t bad = 0, first = 0;
      for (size_t i = 0; i < n; ++i) {
        float exact = 0;
        for (int r = 0; r < world_; ++r) exact += int_value(r, i);  // integers: any order
        if (avg) exact *= 1.0f / float(world_);
        // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): bit identity, NaN and -0 too
        if (std::memcmp(&v.f32()[i], &exact, 4) != 0 && bad++ == 0) first = i;
      }
      EXPECT_EQ(bad, 0u) << (avg ? "avg" : "sum") << " n=" << n << " first bad at " << first;
      expect_same_bits_on_every_rank(v, "ints n=" + std::to_string(n));
    }
  }
}

TEST_P(Hierarchical, RandomValuesFollowTheDocumentedOrder) {
  for (bool avg : {false, true}) {
    for (size_t n : kSizes) {
      Tensor t = pg->allocate(std::max<size_t>(n, 1));
      Tensor v = t.view(0, {int64_t(n)});
      for (size_t i = 0; i < n; ++i) v.f32()[i] = messy_value(rank, i);
      pg->allreduce(v, avg ? ReduceOp::avg : ReduceOp::sum, "messy")->wait();
      size_t bad = 0, first = 0;
      for (size_t i = 0; i < n; ++i) {
        const float want = reference(messy_value, i, avg);
        // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): bit identity, NaN and -0 too
        const bool same_bits = std::memcmp(&v.f32()[i], &want, 4) == 0;
        const bool ok = exact_order(n)
                            ? same_bits
                            : std::fabs(v.f32()[i] - want) <= 1e-5f * (1 + std::fabs(want));
        if (!ok && bad++ == 0) first = i;
      }
      EXPECT_EQ(bad, 0u) << (avg ? "avg" : "sum") << " n=" << n << " first bad at " << first
                         << ": got " << (n ? v.f32()[first] : 0.f) << " want "
                         << (n ? reference(messy_value, first, avg) : 0.f);
      expect_same_bits_on_every_rank(v, "messy n=" + std::to_string(n));
    }
  }
}

TEST_P(Hierarchical, ViewsAtOddOffsetsAndRepeatedRunsAgree) {
  Tensor arena = pg->allocate(70001);
  Tensor a = arena.view(3, {40000}), b = arena.view(40003, {29998});
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    for (size_t i = 0; i < a.numel(); ++i) a.f32()[i] = messy_value(rank, i);
    for (size_t i = 0; i < b.numel(); ++i) b.f32()[i] = messy_value(rank + 5, i);
    WorkPtr wa = pg->allreduce(a, ReduceOp::avg, "a"), wb = pg->allreduce(b, ReduceOp::sum, "b");
    wa->wait();
    wb->wait();
    if (nodes == 2) {  // (EXPECT, not ASSERT: every rank must reach the collectives below)
      size_t bad = 0;
      for (size_t i = 0; i < b.numel(); i += 997) {
        const float want =
            reference([](int r, size_t j) { return messy_value(r + 5, j); }, i, false);
        // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): bit identity, NaN and -0 too
        bad += std::memcmp(&b.f32()[i], &want, 4) != 0;
      }
      EXPECT_EQ(bad, 0u) << "view b";
    }
    expect_same_bits_on_every_rank(a, "view a");
    std::vector<float> now = arena.to_vector();
    if (run == 0) {
      first = now;
    } else {
      EXPECT_EQ(std::memcmp(first.data(), now.data(), now.size() * 4), 0) << "run to run";
    }
  }
}

template <typename H>
void half_case(Hierarchical& f, MpiProcessGroup& pg, int rank, DType dtype) {
  for (bool avg : {false, true}) {
    for (size_t n : kSizes) {
      Tensor t = pg.allocate(std::max<size_t>(n, 1), dtype);
      Tensor v = t.view(0, {int64_t(n)});
      auto in = [](int r, size_t i) { return widen(narrow<H>(messy_value(r, i))); };
      for (size_t i = 0; i < n; ++i) v.data<H>()[i] = narrow<H>(messy_value(rank, i));
      pg.allreduce(v, avg ? ReduceOp::avg : ReduceOp::sum, "half")->wait();
      size_t bad = 0, first = 0;
      for (size_t i = 0; i < n; ++i) {
        const H got = v.data<H>()[i];
        // Exact: 2 nodes send their sums as 16 bits; else float32 throughout, then compared
        // within a few 16-bit roundings.
        const float want =
            f.exact_order(n) ? f.reference(in, i, avg, [](float x) { return widen(narrow<H>(x)); })
                             : f.reference(in, i, avg);
        const H rounded = narrow<H>(want);
        const bool ok = f.exact_order(n)
                            ? std::memcmp(&got, &rounded, sizeof(H)) == 0
                            : std::fabs(widen(got) - want) <= 2e-2f * (1 + std::fabs(want));
        if (!ok && bad++ == 0) first = i;
      }
      EXPECT_EQ(bad, 0u) << dtype_name(dtype) << (avg ? " avg" : " sum") << " n=" << n
                         << " first bad at " << first;
      f.expect_same_bits_on_every_rank(v,
                                       std::string(dtype_name(dtype)) + " n=" + std::to_string(n));
    }
  }
}

TEST_P(Hierarchical, SixteenBitSumsInFloat32AndRoundsOnce) {
  half_case<bf16>(*this, *pg, rank, DType::bf16);
  half_case<f16>(*this, *pg, rank, DType::f16);
}

// The default options: up to 256 KB in the desync check, then flat, then hierarchical.
TEST_P(Hierarchical, DefaultPathsSumExactly) {
  MpiProcessGroupOptions o;
  o.node_split = GetParam();
  MpiProcessGroup dflt(MPI_COMM_WORLD, o);
  ASSERT_TRUE(dflt.hierarchical());
  for (size_t n : {size_t(1000), size_t(16383), size_t(65536), size_t(65537), size_t(70000)}) {
    Tensor t = dflt.allocate(n);
    for (size_t i = 0; i < n; ++i) t.f32()[i] = int_value(rank, i);
    dflt.allreduce(t, ReduceOp::sum, "medium")->wait();
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      float exact = 0;
      for (int r = 0; r < world_; ++r) exact += int_value(r, i);
      bad += t.f32()[i] != exact;
    }
    EXPECT_EQ(bad, 0u) << "n=" << n;
  }
}

TEST_P(Hierarchical, OtherCollectivesStillWork) {
  Tensor b = Tensor::from_vector({5}, std::vector<float>(5, float(rank)));
  pg->broadcast(b, world_ - 1)->wait();
  EXPECT_EQ(b.to_vector(), std::vector<float>(5, float(world_ - 1)));
  Tensor in = Tensor::from_vector({2}, std::vector<float>(2, float(rank)));
  Tensor out = Tensor::zeros({2 * int64_t(world_)});
  pg->allgather(in, out)->wait();
  for (int r = 0; r < world_; ++r) EXPECT_EQ(out.to_vector()[2 * size_t(r)], float(r));
  pg->barrier()->wait();
  // Outside the shared windows: the flat path, after the two-stage check.
  Tensor plain = Tensor::from_vector({300000}, std::vector<float>(300000, 1.0f));
  pg->allreduce(plain, ReduceOp::sum, "plain")->wait();
  EXPECT_EQ(plain.to_vector()[299999], float(world_));
  Tensor mx = Tensor::from_vector({3}, std::vector<float>(3, float(rank)));
  pg->allreduce(mx, ReduceOp::max, "max")->wait();
  EXPECT_EQ(mx.to_vector()[0], float(world_ - 1));
}

// A mismatch must be a CollectiveError on every rank, naming both sides, and stop the group.
void expect_desync(MpiProcessGroup& pg, const WorkPtr& w, const std::string& a,
                   const std::string& b) {
  try {
    w->wait();
    ADD_FAILURE() << w->description() << " completed although the ranks disagree";
  } catch (const CollectiveError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ranks disagree on a collective"), std::string::npos) << msg;
    EXPECT_NE(msg.find(a), std::string::npos) << msg;
    EXPECT_NE(msg.find(b), std::string::npos) << msg;
  }
  Tensor t = Tensor::zeros({3});
  try {
    pg.allreduce(t, ReduceOp::sum, "next")->wait();
    ADD_FAILURE() << "a collective ran after a desync";
  } catch (const CollectiveError& e) {
    EXPECT_NE(std::string(e.what()).find("not run"), std::string::npos) << e.what();
  }
}

TEST_P(Hierarchical, ADesyncAcrossNodesIsNamedOnEveryRank) {
  Tensor t = pg->allocate(100000);
  const bool last_node = rank >= world_ - local;
  expect_desync(*pg, pg->allreduce(t, ReduceOp::sum, last_node ? "bucket B" : "bucket A"),
                "'bucket A'", "'bucket B'");
}

TEST_P(Hierarchical, ATinyDesyncAcrossNodesIsNamedOnEveryRank) {
  Tensor t = pg->allocate(16);
  const bool last_node = rank >= world_ - local;
  expect_desync(*pg, pg->allreduce(t, ReduceOp::sum, last_node ? "loss B" : "loss A"), "'loss A'",
                "'loss B'");
}

TEST_P(Hierarchical, ADesyncInsideOneNodeStopsEveryNode) {
  // Only the last rank differs: every node, not only the last rank's, names the pair.
  Tensor t = pg->allocate(100000);
  const bool odd_one = rank == world_ - 1;
  WorkPtr w = pg->allreduce(t, ReduceOp::sum, odd_one ? "bucket Z" : "bucket A");
  expect_desync(*pg, w, "rank 0 is in", "but rank " + std::to_string(world_ - 1) + " is in");
  // (the message also carries both tags: checked in the test above)
}

TEST_P(Hierarchical, AnAllreduceInsideAgainstOutsideTheWindowsIsNamed) {
  Tensor shared = pg->allocate(5000), plain = Tensor::zeros({5000});
  WorkPtr w = pg->allreduce(rank == 1 ? plain : shared, ReduceOp::sum, "same tag");
  expect_desync(*pg, w, "in shared buffer", "outside shared memory");
}

TEST_P(Hierarchical, ABroadcastAgainstAnAllreduceAcrossNodesIsNamed) {
  Tensor t = pg->allocate(1000);
  const bool last_node = rank >= world_ - local;
  WorkPtr w = last_node ? pg->broadcast(t, 0, "bcast") : pg->allreduce(t, ReduceOp::sum, "ar");
  expect_desync(*pg, w, "'ar'", "'bcast'");
}

INSTANTIATE_TEST_SUITE_P(NodesOf, Hierarchical, ::testing::Values(2, 3),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return std::to_string(i.param);
                         });

}  // namespace
