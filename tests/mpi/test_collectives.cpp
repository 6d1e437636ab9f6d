// The MPI backend under mpirun with 1, 2 and 4 ranks. Values depend on rank and index and
// stay small integers (or their halves and quarters), so that every expected result is
// exact in float and compared with ==.
#include <gtest/gtest.h>

#include <limits>

#include <sys/resource.h>
#include <cstring>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <mpi.h>
#include "runtime/comm/mpi_process_group.h"
#include "runtime/core/clock.h"
#include "runtime/core/error.h"

using namespace dp;

namespace {

// 20001: 80 KB, two ranks carry the check in its first half exchange (FusedCheck::run_pair).
const std::vector<size_t> kSizes = {1, 3, 7, 256, 257, 1000, 20001, 65537, (size_t(1) << 20) + 3};

float value(int rank, size_t i) {
  return float(int(i % 1021) - 510 + 3 * rank);
}

Tensor rank_tensor(int rank, size_t n) {
  Tensor t = Tensor::zeros({int64_t(n)});
  float* p = t.f32();
  for (size_t i = 0; i < n; ++i) p[i] = value(rank, i);
  return t;
}

float sum_over_ranks(int world, size_t i) {
  float s = 0;
  for (int r = 0; r < world; ++r) s += value(r, i);
  return s;
}

// Compares without a gtest line per element: a million mismatches would drown the log.
void expect_all(const Tensor& t, const std::function<float(size_t)>& want, const char* what) {
  const float* p = t.f32();
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < t.numel(); ++i) {
    if (p[i] != want(i) && bad++ == 0) first = i;
  }
  EXPECT_EQ(bad, 0u) << what << " " << t.str() << ": first at " << first << " got " << p[first]
                     << " want " << want(first);
}

// With the shared-memory path on (its desync check in front of MPI) and off (small
// all-reduces riding in the MPI desync check, runtime/comm/fused_check.h).
class Collectives : public ::testing::TestWithParam<bool> {
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

TEST_P(Collectives, RankSizeBackend) {
  int r = 0, s = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  EXPECT_EQ(rank, r);
  EXPECT_EQ(world, s);
  EXPECT_EQ(pg.backend(), "mpi");
}

TEST_P(Collectives, AllreduceSumAndAvgOnOddSizes) {
  for (size_t n : kSizes) {
    Tensor sum = rank_tensor(rank, n), avg = rank_tensor(rank, n);
    auto ws = pg.allreduce(sum, ReduceOp::sum, "sum");
    auto wa = pg.allreduce(avg, ReduceOp::avg, "avg");
    ws->wait();
    wa->wait();
    expect_all(
        sum, [&](size_t i) { return sum_over_ranks(world, i); }, "sum");
    expect_all(
        avg, [&](size_t i) { return sum_over_ranks(world, i) * (1.0f / world); }, "avg");
  }
}

TEST_P(Collectives, AllreduceMinMax) {
  auto v = [](int r, size_t i) { return float(int((i * 7 + size_t(r) * 13) % 97) - 48); };
  for (size_t n : {size_t(1), size_t(7), size_t(65537)}) {
    Tensor mn = Tensor::zeros({int64_t(n)}), mx = Tensor::zeros({int64_t(n)});
    for (size_t i = 0; i < n; ++i) mn.f32()[i] = mx.f32()[i] = v(rank, i);
    auto w1 = pg.allreduce(mn, ReduceOp::min, "min");
    auto w2 = pg.allreduce(mx, ReduceOp::max, "max");
    w1->wait();
    w2->wait();
    auto over = [&](size_t i, bool want_min) {
      float best = v(0, i);
      for (int r = 1; r < world; ++r)
        best = want_min ? std::min(best, v(r, i)) : std::max(best, v(r, i));
      return best;
    };
    expect_all(
        mn, [&](size_t i) { return over(i, true); }, "min");
    expect_all(
        mx, [&](size_t i) { return over(i, false); }, "max");
  }
}

// min/max of a NaN or of zeros of both signs: every rank ends with the same bits. The check's
// recursive doubling combined partners' operands in opposite orders with std::min, so a NaN
// reached one partner and not the other, and +0/-0 came out differently.
TEST_P(Collectives, AllreduceMinMaxAgreeOnNanAndSignedZeros) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto fill = [&](Tensor& t) {
    float* p = t.f32();
    p[0] = rank == 0 ? nan : 1.0f;
    p[1] = rank == 0 ? 0.0f : -0.0f;
    p[2] = rank == 0 ? -0.0f : 0.0f;
    p[3] = rank == world - 1 ? nan : 2.0f;
  };
  for (ReduceOp op : {ReduceOp::min, ReduceOp::max}) {
    Tensor t = Tensor::zeros({4});
    fill(t);
    pg.allreduce(t, op, "nan")->wait();
    Tensor all = Tensor::zeros({int64_t(4 * world)});
    pg.allgather(t, all, "bits")->wait();
    std::vector<uint32_t> bits(size_t(4 * world));
    std::memcpy(bits.data(), all.f32(), bits.size() * sizeof(float));
    for (int r = 1; r < world; ++r)
      for (size_t i = 0; i < 4; ++i)
        EXPECT_EQ(bits[size_t(r) * 4 + i], bits[i]) << "element " << i << " of rank " << r;
    if (!GetParam() && world > 1) {  // the check's own combine: a NaN wins, -0 < +0
      EXPECT_TRUE(std::isnan(t.f32()[0]));
      EXPECT_TRUE(std::isnan(t.f32()[3]));
      EXPECT_EQ(std::signbit(t.f32()[1]), op == ReduceOp::min);
      EXPECT_EQ(std::signbit(t.f32()[2]), op == ReduceOp::min);
    }
  }
}

TEST_P(Collectives, AllreduceInt32Sum) {
  for (size_t n : {size_t(1), size_t(65537)}) {
    std::vector<int32_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = int32_t(i % 100000) * 3 - 1000 + rank * 100000;
    Tensor t = Tensor::from_vector({int64_t(n)}, v);
    pg.allreduce(t, ReduceOp::sum, "i32")->wait();
    const int32_t* p = t.data<int32_t>();
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      int32_t want = world * (int32_t(i % 100000) * 3 - 1000) + 100000 * world * (world - 1) / 2;
      bad += p[i] != want;
    }
    EXPECT_EQ(bad, 0u) << n;
  }
}

TEST_P(Collectives, AllreduceInt32MinMaxAndWrappingSum) {
  for (size_t n : {size_t(1), size_t(256), size_t(257), size_t(65537)}) {  // around 1 KB
    Tensor mn = Tensor::zeros({int64_t(n)}, DType::i32),
           mx = Tensor::zeros({int64_t(n)}, DType::i32);
    Tensor big = Tensor::zeros({int64_t(n)}, DType::i32);
    for (size_t i = 0; i < n; ++i) {
      mn.data<int32_t>()[i] = mx.data<int32_t>()[i] = int32_t((i * 31 + size_t(rank) * 17) % 101);
      big.data<int32_t>()[i] = INT32_MAX;  // the sum wraps, as MPI_SUM's does
    }
    auto w1 = pg.allreduce(mn, ReduceOp::min, "min");
    auto w2 = pg.allreduce(mx, ReduceOp::max, "max");
    auto w3 = pg.allreduce(big, ReduceOp::sum, "wraps");
    for (auto& w : {w1, w2, w3}) w->wait();
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      int32_t lo = INT32_MAX, hi = INT32_MIN;
      for (int r = 0; r < world; ++r) {
        const auto v = int32_t((i * 31 + size_t(r) * 17) % 101);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      const auto wrapped = int32_t(uint32_t(INT32_MAX) * uint32_t(world));
      bad += mn.data<int32_t>()[i] != lo || mx.data<int32_t>()[i] != hi ||
             big.data<int32_t>()[i] != wrapped;
    }
    EXPECT_EQ(bad, 0u) << n;
  }
}

TEST_P(Collectives, BroadcastFromEveryRoot) {
  for (int root = 0; root < world; ++root) {
    for (size_t n : {size_t(7), size_t(65537)}) {
      Tensor t = rank_tensor(rank, n);
      pg.broadcast(t, root, "bcast")->wait();
      expect_all(
          t, [&](size_t i) { return value(root, i); }, "broadcast");
    }
    Tensor i = Tensor::from_vector({2}, std::vector<int32_t>{rank, -rank});
    pg.broadcast(i, root)->wait();
    EXPECT_EQ(i.data<int32_t>()[0], root);
    EXPECT_EQ(i.data<int32_t>()[1], -root);
  }
}

TEST_P(Collectives, AllgatherPlacesRankBlocksInOrder) {
  for (size_t n : {size_t(1), size_t(7), size_t(65537)}) {
    Tensor in = rank_tensor(rank, n), out = Tensor::zeros({int64_t(n) * world});
    pg.allgather(in, out, "gather")->wait();
    expect_all(
        out, [&](size_t i) { return value(int(i / n), i % n); }, "allgather");
    // In place: the input already is this rank's block of the output.
    Tensor out2 = Tensor::zeros({int64_t(n) * world});
    Tensor mine = out2.view(size_t(rank) * n, {int64_t(n)});
    mine.copy_(in);
    pg.allgather(mine, out2, "in place")->wait();
    expect_all(
        out2, [&](size_t i) { return value(int(i / n), i % n); }, "allgather in place");
  }
}

TEST_P(Collectives, AllgatherFromAnOverlappingInput) {
  // Every rank sends the first block of its own output: not MPI_IN_PLACE except on rank 0.
  const size_t n = 5;
  Tensor out = Tensor::zeros({int64_t(n) * world});
  for (size_t i = 0; i < n; ++i) out.f32()[i] = value(rank, i);
  pg.allgather(out.view(0, {int64_t(n)}), out)->wait();
  expect_all(
      out, [&](size_t i) { return value(int(i / n), i % n); }, "overlapping allgather");
}

TEST(MpiChunked, CountsAboveTheLimitGoInChunks) {
  // The same code path as a tensor above INT_MAX elements, at a size a test can afford.
  MpiProcessGroupOptions options;
  options.max_count_per_call = 1000;
  MpiProcessGroup pg(MPI_COMM_WORLD, options);
  const int rank = pg.rank(), world = pg.size();
  for (size_t n : {size_t(999), size_t(1000), size_t(1001), size_t(65537)}) {
    Tensor avg = rank_tensor(rank, n), b = rank_tensor(rank, n);
    Tensor in = rank_tensor(rank, n), out = Tensor::zeros({int64_t(n) * world});
    Tensor out2 = Tensor::zeros({int64_t(n) * world});
    Tensor mine = out2.view(size_t(rank) * n, {int64_t(n)});
    mine.copy_(in);
    auto w1 = pg.allreduce(avg, ReduceOp::avg);
    auto w2 = pg.broadcast(b, world - 1);
    auto w3 = pg.allgather(in, out);
    auto w4 = pg.allgather(mine, out2);
    for (auto& w : {w1, w2, w3, w4}) w->wait();
    expect_all(
        avg, [&](size_t i) { return sum_over_ranks(world, i) * (1.0f / world); }, "avg");
    expect_all(
        b, [&](size_t i) { return value(world - 1, i); }, "broadcast");
    expect_all(
        out, [&](size_t i) { return value(int(i / n), i % n); }, "allgather");
    expect_all(
        out2, [&](size_t i) { return value(int(i / n), i % n); }, "allgather in place");
  }
}

TEST_P(Collectives, Barrier) {
  auto w = pg.barrier("sync");
  w->wait();
  EXPECT_TRUE(w->done());
  EXPECT_EQ(w->description(), "barrier 'sync'");
}

TEST_P(Collectives, SixtyFourInFlightThenWaitedInOrder) {
  std::vector<Tensor> ts;
  std::vector<WorkPtr> works;
  for (int k = 0; k < 64; ++k) {
    Tensor t = Tensor::zeros({int64_t(k * 37 + 1)});
    for (size_t i = 0; i < t.numel(); ++i) t.f32()[i] = float(k + rank + int(i % 5));
    ts.push_back(t);
    works.push_back(pg.allreduce(ts.back(), ReduceOp::sum, "bucket " + std::to_string(k)));
  }
  const int rank_sum = world * (world - 1) / 2;  // 0 + 1 + ... + (world - 1): exact
  for (size_t k = 0; k < works.size(); ++k) {
    if (k > 0) {
      EXPECT_EQ(works[k]->seq(), works[k - 1]->seq() + 1);
    }
    works[k]->wait();
    const float base = float(world * int(k)) + float(rank_sum);
    expect_all(
        ts[k], [&](size_t i) { return base + float(world * int(i % 5)); }, "in flight");
  }
}

TEST_P(Collectives, DescriptionNamesOpTensorAndTag) {
  Tensor t = Tensor::zeros({1234});
  auto w = pg.allreduce(t, ReduceOp::avg, "bucket 3");
  EXPECT_EQ(w->description(), "allreduce(avg) float32[1234] 'bucket 3'");
  w->wait();
}

TEST_P(Collectives, WorkTimestampsAreOrdered) {
  Tensor t = rank_tensor(rank, 65537);
  auto w = pg.allreduce(t, ReduceOp::sum);
  w->wait();
  EXPECT_TRUE(w->done());
  EXPECT_GT(w->enqueue_us(), 0);
  EXPECT_LE(w->enqueue_us(), w->start_us());
  EXPECT_LE(w->start_us(), w->end_us());
  EXPECT_GE(w->duration_us(), 0);
}

TEST_P(Collectives, CommunicationOverlapsComputation) {
  // The main thread computes for ~50 ms without entering MPI; the comm thread must finish
  // the allreduce meanwhile. The message is small (one eager send) and ranks are lined up
  // by a barrier, but with 4 ranks on 2 cores a rank the OS descheduled can still miss the
  // window, so all ranks agree on whether to try again (up to 5 times).
  bool all_overlapped = false;
  double sink = 0;
  for (int attempt = 0; attempt < 5 && !all_overlapped; ++attempt) {
    pg.barrier()->wait();
    Tensor t = rank_tensor(rank, 256);
    auto w = pg.allreduce(t, ReduceOp::sum, "overlap");
    const double t0 = now_us();
    double x = 1.0;
    while (now_us() - t0 < 50e3) {
      for (int k = 0; k < 1000; ++k) x = x * 0.999999 + 1e-6 * double(k);
    }
    const double loop_end = now_us();
    sink += x;
    w->wait();
    expect_all(
        t, [&](size_t i) { return sum_over_ranks(world, i); }, "overlap");
    Tensor ok = Tensor::from_vector({1}, std::vector<int32_t>{w->end_us() < loop_end ? 1 : 0});
    pg.allreduce(ok, ReduceOp::min, "agree")->wait();
    all_overlapped = ok.data<int32_t>()[0] == 1;
  }
  EXPECT_TRUE(all_overlapped) << "the allreduce only completed after the compute loop ended";
  EXPECT_TRUE(std::isfinite(sink));
}

TEST_P(Collectives, IdleCommThreadBlocksInsteadOfSpinning) {
  pg.barrier()->wait();
  auto cpu_us = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 +
           double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  };
  const double before = cpu_us();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_LT(cpu_us() - before, 40e3) << "the process burnt CPU while idle for 200 ms";
}

TEST_P(Collectives, BadCallsThrowOnEveryRankBeforeQueueing) {
  auto before = pg.barrier();
  before->wait();
  Tensor undefined, f = Tensor::zeros({3}), i32 = Tensor::zeros({3}, DType::i32);
  Tensor wrong = Tensor::zeros({int64_t(3 * world + 1)});
  Tensor odd = Tensor::zeros({3}, static_cast<DType>(9));
  auto throws = [](const std::function<void()>& call, const std::string& needle) {
    try {
      call();
      ADD_FAILURE() << "no dp::Error; expected one mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  throws([&] { pg.allreduce(undefined, ReduceOp::sum, "u"); }, "undefined");
  throws([&] { pg.broadcast(undefined, 0); }, "undefined");
  throws([&] { pg.allgather(f, undefined); }, "undefined");
  throws([&] { pg.allgather(f, wrong, "g"); }, "needs world size");
  throws([&] { pg.allgather(f, i32); }, "dtype");
  throws([&] { pg.broadcast(f, world); }, "out of range");
  throws([&] { pg.broadcast(f, -1); }, "out of range");
  throws([&] { pg.allreduce(i32, ReduceOp::avg, "labels"); }, "avg of int32[3]");
  throws([&] { pg.allreduce(odd, ReduceOp::sum); }, "unsupported dtype");
  // Nothing was queued and no rank is stuck: the next collective is the next number.
  Tensor one = Tensor::zeros({1});
  one.fill_(1);
  auto w = pg.allreduce(one, ReduceOp::sum);
  w->wait();
  EXPECT_EQ(w->seq(), before->seq() + 1);
  EXPECT_EQ(one.f32()[0], float(world));
}

TEST(MpiProcessGroupSetup, NullCommunicatorIsAnError) {
  EXPECT_THROW(MpiProcessGroup pg(MPI_COMM_NULL), Error);
}

TEST(MpiProcessGroupSetup, WorksOnASubCommunicator) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm half;
  MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &half);
  {
    MpiProcessGroup pg(half);
    Tensor t = Tensor::from_vector({1}, std::vector<int32_t>{rank});
    pg.allreduce(t, ReduceOp::sum)->wait();
    int want = 0, size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    for (int r = rank % 2; r < size; r += 2) want += r;
    EXPECT_EQ(t.data<int32_t>()[0], want);
  }
  MPI_Comm_free(&half);
}

TEST(MpiProcessGroupSetup, DestructorFinishesQueuedWork) {
  std::vector<WorkPtr> works;
  std::vector<Tensor> ts;
  int world = 1;
  {
    MpiProcessGroup pg;
    world = pg.size();
    for (int k = 0; k < 8; ++k) {
      ts.push_back(Tensor::zeros({4096}));
      ts.back().fill_(1.0f);
      works.push_back(pg.allreduce(ts.back(), ReduceOp::sum));
    }
  }
  for (size_t k = 0; k < works.size(); ++k) {
    EXPECT_TRUE(works[k]->done());
    expect_all(
        ts[k], [&](size_t) { return float(world); }, "after destruction");
  }
}

INSTANTIATE_TEST_SUITE_P(SharedMemory, Collectives, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "shm_on" : "shm_off"; });
