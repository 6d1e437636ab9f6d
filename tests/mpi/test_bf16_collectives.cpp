// bfloat16 collectives of the MPI backend under mpirun (1, 2, 4 ranks), against a reference
// every rank computes from all ranks' deterministic inputs.
//  - Shared-memory buffers (allocate()): widened, summed in float32 in rank order, rounded
//    once: exactly the reference's bits.
//  - Anything else: MPI_Allreduce with a user-defined op that rounds every combine, so within
//    one bfloat16 ulp (of the sum of magnitudes) per combine of the reference.
//  - Broadcast and allgather move the 16-bit patterns untouched (NaN payloads included).
// Every result must also be bit-identical on every rank: DDP's replicas depend on it.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "runtime/comm/mpi_process_group.h"
#include "runtime/core/bf16.h"
#include "runtime/core/error.h"

using namespace dp;

namespace {

const std::vector<size_t> kSizes = {1, 3, 33, 1000, 65537};

// Rank r's element i: a bfloat16 value of varied sign and magnitude, so that sums over ranks
// need rounding back to bfloat16.
float value(int rank, size_t i) {
  const float s = std::sin(0.37f * float(i) + 1.3f * float(rank) + 0.1f);
  return round_to_bf16(std::ldexp(s, int(i % 9) - 4));
}

// Arbitrary 16-bit patterns (NaNs and infinities included) for the collectives that move bytes.
uint16_t pattern(int rank, size_t i) {
  return uint16_t((i * 2654435761u + size_t(rank) * 40503u) >> 7);
}

Tensor bf16_tensor(size_t n) {
  return Tensor::zeros({int64_t(n)}, DType::bf16);
}

void fill(Tensor& t, const std::function<float(size_t)>& f) {
  bf16* p = t.data<bf16>();
  for (size_t i = 0; i < t.numel(); ++i) p[i] = float_to_bf16(f(i));
}

// The float32 sum in rank order (the shared-memory path's order), averaged, unrounded.
float f32_reduction(int world, size_t i, bool average) {
  float acc = value(0, i);
  for (int r = 1; r < world; ++r) acc += value(r, i);
  return average ? acc * (1.0f / float(world)) : acc;
}

// One bfloat16 ulp at |x|: 8 significant bits.
float bf16_ulp(float x) {
  int e = 0;
  std::frexp(x, &e);
  return x == 0.0f ? 0.0f : std::ldexp(1.0f, e - 8);
}

// Compares element by element, reporting the first mismatch only (not a line per element).
void expect_each(const Tensor& t, const std::function<bool(size_t, float)>& ok,
                 const std::function<float(size_t)>& want, const std::string& what) {
  const bf16* p = t.data<bf16>();
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < t.numel(); ++i) {
    if (!ok(i, bf16_to_float(p[i])) && bad++ == 0) first = i;
  }
  EXPECT_EQ(bad, 0u) << what << " " << t.str() << ": first at " << first << " got "
                     << bf16_to_float(p[first]) << " want " << want(first);
}

void expect_once_rounded(const Tensor& t, int world, bool average, const std::string& what) {
  auto want = [&](size_t i) { return round_to_bf16(f32_reduction(world, i, average)); };
  expect_each(
      t,
      [&](size_t i, float got) { return float_to_bf16(got).bits == float_to_bf16(want(i)).bits; },
      want, what + " (exact)");
}

// Per combine one rounding of at most half an ulp of the largest partial sum (bounded by the
// sum of magnitudes S), plus the reference's own rounding: world * ulp(S) covers the sum;
// the average adds one more rounding after the scaling.
void expect_per_combine_rounded(const Tensor& t, int world, bool average, const std::string& what) {
  auto want = [&](size_t i) { return f32_reduction(world, i, average); };
  expect_each(
      t,
      [&](size_t i, float got) {
        float s = 0;
        for (int r = 0; r < world; ++r) s += std::fabs(value(r, i));
        const float tol = average ? 2.0f * bf16_ulp(s) : float(world) * bf16_ulp(s);
        return std::fabs(got - want(i)) <= tol;
      },
      want, what + " (within one ulp per combine)");
}

void expect_same_bits_on_every_rank(const Tensor& t, const std::string& what) {
  std::vector<uint16_t> root(t.numel());
  std::memcpy(root.data(), t.raw(), t.nbytes());
  MPI_Bcast(root.data(), int(root.size()), MPI_UINT16_T, 0, MPI_COMM_WORLD);
  EXPECT_EQ(std::memcmp(root.data(), t.raw(), t.nbytes()), 0) << what << ": differs from rank 0";
}

void expect_patterns(const Tensor& t, const std::function<uint16_t(size_t)>& want,
                     const std::string& what) {
  const bf16* p = t.data<bf16>();
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < t.numel(); ++i) {
    if (p[i].bits != want(i) && bad++ == 0) first = i;
  }
  EXPECT_EQ(bad, 0u) << what << ": first at " << first << " got " << p[first].bits << " want "
                     << want(first);
}

MpiProcessGroupOptions options(bool shared, size_t max_count = size_t(INT_MAX)) {
  MpiProcessGroupOptions o;
  o.shared_memory = shared;
  o.max_count_per_call = max_count;
  return o;
}

class Bf16Allreduce : public ::testing::TestWithParam<bool> {
 protected:
  MpiProcessGroup pg{MPI_COMM_WORLD, options(GetParam())};
  int rank = pg.rank();
  int world = pg.size();

  // One rank (MPI_Allreduce of one rank: no combine) and the shared path round once.
  void expect_reduced(const Tensor& t, bool shared_buffer, bool average, const std::string& w) {
    if (world == 1 || (shared_buffer && pg.uses_shared_memory())) {
      expect_once_rounded(t, world, average, w);
    } else {
      expect_per_combine_rounded(t, world, average, w);
    }
    expect_same_bits_on_every_rank(t, w);
  }
};

}  // namespace

TEST_P(Bf16Allreduce, AllocatedBuffersSumAndAverage) {
  for (size_t n : kSizes) {
    SCOPED_TRACE("n=" + std::to_string(n));
    Tensor sum = pg.allocate(n, DType::bf16), avg = pg.allocate(n, DType::bf16);
    ASSERT_EQ(sum.str(), "bfloat16[" + std::to_string(n) + "]");
    // A float32 all-reduce in flight beside them: the shared path keeps them apart.
    Tensor f = pg.allocate(n);
    f.fill_(float(rank + 1));
    fill(sum, [&](size_t i) { return value(rank, i); });
    fill(avg, [&](size_t i) { return value(rank, i); });
    auto ws = pg.allreduce(sum, ReduceOp::sum, "sum");
    auto wf = pg.allreduce(f, ReduceOp::sum, "f32");
    auto wa = pg.allreduce(avg, ReduceOp::avg, "avg");
    for (auto& w : {ws, wf, wa}) w->wait();
    expect_reduced(sum, true, false, "sum");
    expect_reduced(avg, true, true, "avg");
    EXPECT_EQ(f.f32()[n - 1], float(world * (world + 1) / 2));
  }
}

TEST_P(Bf16Allreduce, OrdinaryTensorsGoThroughMpiAllreduce) {
  for (size_t n : kSizes) {
    SCOPED_TRACE("n=" + std::to_string(n));
    Tensor sum = bf16_tensor(n), avg = bf16_tensor(n);
    fill(sum, [&](size_t i) { return value(rank, i); });
    fill(avg, [&](size_t i) { return value(rank, i); });
    auto ws = pg.allreduce(sum, ReduceOp::sum, "sum");
    auto wa = pg.allreduce(avg, ReduceOp::avg, "avg");
    ws->wait();
    wa->wait();
    expect_reduced(sum, false, false, "sum");
    expect_reduced(avg, false, true, "avg");
  }
}

TEST_P(Bf16Allreduce, BroadcastFromEveryRootAndAllgatherMoveTheBits) {
  const size_t n = 1001;
  for (int root = 0; root < world; ++root) {
    Tensor t = bf16_tensor(n);
    for (size_t i = 0; i < n; ++i) t.data<bf16>()[i].bits = pattern(rank, i);
    pg.broadcast(t, root, "bcast")->wait();
    expect_patterns(
        t, [&](size_t i) { return pattern(root, i); }, "broadcast from " + std::to_string(root));
  }
  Tensor in = bf16_tensor(n), out = bf16_tensor(n * size_t(world));
  for (size_t i = 0; i < n; ++i) in.data<bf16>()[i].bits = pattern(rank, i);
  pg.allgather(in, out, "gather")->wait();
  expect_patterns(
      out, [&](size_t i) { return pattern(int(i / n), i % n); }, "allgather");
  // In place: this rank's block of the output is the input.
  Tensor out2 = bf16_tensor(n * size_t(world));
  Tensor mine = out2.view(size_t(rank) * n, {int64_t(n)});
  mine.copy_(in);
  pg.allgather(mine, out2, "gather in place")->wait();
  expect_patterns(
      out2, [&](size_t i) { return pattern(int(i / n), i % n); }, "allgather in place");
}

TEST_P(Bf16Allreduce, MinMaxAreRejectedOnEveryRankBeforeQueueing) {
  auto before = pg.barrier();
  before->wait();
  Tensor t = bf16_tensor(5);
  for (ReduceOp op : {ReduceOp::min, ReduceOp::max}) {
    try {
      pg.allreduce(t, op, "bf16 extremes");
      ADD_FAILURE() << "a bfloat16 " << reduce_op_name(op) << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("bfloat16"), std::string::npos) << e.what();
    }
  }
  auto w = pg.barrier();
  w->wait();
  EXPECT_EQ(w->seq(), before->seq() + 1);  // nothing was queued
}

INSTANTIATE_TEST_SUITE_P(SharedMemory, Bf16Allreduce, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "on" : "off"; });

TEST(Bf16Chunked, CountsAboveTheLimitGoInChunks) {
  for (bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "shared memory on" : "shared memory off");
    MpiProcessGroup pg(MPI_COMM_WORLD, options(shared, 1000));
    const int rank = pg.rank(), world = pg.size();
    for (size_t n : {size_t(999), size_t(1000), size_t(1001), size_t(65537)}) {
      SCOPED_TRACE("n=" + std::to_string(n));
      Tensor plain = bf16_tensor(n), shm = pg.allocate(n, DType::bf16);
      fill(plain, [&](size_t i) { return value(rank, i); });
      fill(shm, [&](size_t i) { return value(rank, i); });
      Tensor b = bf16_tensor(n), in = bf16_tensor(n), out = bf16_tensor(n * size_t(world));
      for (size_t i = 0; i < n; ++i) {
        b.data<bf16>()[i].bits = pattern(rank, i);
        in.data<bf16>()[i].bits = pattern(rank, i);
      }
      auto w1 = pg.allreduce(plain, ReduceOp::avg, "chunked avg");
      auto w2 = pg.allreduce(shm, ReduceOp::sum, "shared sum");
      auto w3 = pg.broadcast(b, world - 1, "chunked bcast");
      auto w4 = pg.allgather(in, out, "chunked gather");
      for (auto& w : {w1, w2, w3, w4}) w->wait();
      if (world == 1) {
        expect_once_rounded(plain, world, true, "chunked avg");
      } else {
        expect_per_combine_rounded(plain, world, true, "chunked avg");
      }
      expect_same_bits_on_every_rank(plain, "chunked avg");
      if (world == 1 || pg.uses_shared_memory()) {
        expect_once_rounded(shm, world, false, "shared sum");
      } else {
        expect_per_combine_rounded(shm, world, false, "shared sum");
      }
      expect_patterns(
          b, [&](size_t i) { return pattern(world - 1, i); }, "chunked broadcast");
      expect_patterns(
          out, [&](size_t i) { return pattern(int(i / n), i % n); }, "chunked allgather");
    }
  }
}
