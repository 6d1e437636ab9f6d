// bfloat16 and float16 collectives of the MPI backend under mpirun (1, 2, 4 ranks), every test
// typed over both, against a reference every rank computes from all ranks' deterministic
// inputs.
//  - Shared-memory buffers (allocate()): widened, summed in float32 in rank order, rounded
//    once: exactly the reference's bits.
//  - Anything else: MPI_Allreduce with a user-defined op that rounds every combine, so within
//    one ulp (of the sum of magnitudes) per combine of the reference.
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
#include "runtime/core/error.h"
#include "runtime/core/half_float.h"

using namespace dp;

namespace {

const std::vector<size_t> kSizes = {1, 3, 33, 1000, 65537};

// The two 16-bit types: their significant bits (the ulp), and their name in messages.
template <typename H>
struct Half;
template <>
struct Half<bf16> {
  static constexpr int kBits = 8;
  static constexpr const char* kName = "bfloat16";
};
template <>
struct Half<f16> {
  static constexpr int kBits = 11;
  static constexpr const char* kName = "float16";
};

// Rank r's element i: an H value of varied sign and magnitude (well inside float16's normal
// range), so that sums over ranks need rounding back to H.
template <typename H>
float value(int rank, size_t i) {
  const float s = std::sin(0.37f * float(i) + 1.3f * float(rank) + 0.1f);
  return round_to<H>(std::ldexp(s, int(i % 9) - 4));
}

// Arbitrary 16-bit patterns (NaNs and infinities included) for the collectives that move bytes.
uint16_t pattern(int rank, size_t i) {
  return uint16_t((i * 2654435761u + size_t(rank) * 40503u) >> 7);
}

template <typename H>
Tensor half_tensor(size_t n) {
  return Tensor::zeros({int64_t(n)}, dtype_of<H>::value);
}

template <typename H>
void fill(Tensor& t, const std::function<float(size_t)>& f) {
  H* p = t.data<H>();
  for (size_t i = 0; i < t.numel(); ++i) p[i] = narrow<H>(f(i));
}

// The float32 sum in rank order (the shared-memory path's order), averaged, unrounded.
template <typename H>
float f32_reduction(int world, size_t i, bool average) {
  float acc = value<H>(0, i);
  for (int r = 1; r < world; ++r) acc += value<H>(r, i);
  return average ? acc * (1.0f / float(world)) : acc;
}

// One ulp of H at |x|.
template <typename H>
float half_ulp(float x) {
  int e = 0;
  std::frexp(x, &e);
  return x == 0.0f ? 0.0f : std::ldexp(1.0f, e - Half<H>::kBits);
}

// Compares element by element, reporting the first mismatch only (not a line per element).
template <typename H>
void expect_each(const Tensor& t, const std::function<bool(size_t, float)>& ok,
                 const std::function<float(size_t)>& want, const std::string& what) {
  const H* p = t.data<H>();
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < t.numel(); ++i) {
    if (!ok(i, widen(p[i])) && bad++ == 0) first = i;
  }
  EXPECT_EQ(bad, 0u) << what << " " << t.str() << ": first at " << first << " got "
                     << widen(p[first]) << " want " << want(first);
}

template <typename H>
void expect_once_rounded(const Tensor& t, int world, bool average, const std::string& what) {
  auto want = [&](size_t i) { return round_to<H>(f32_reduction<H>(world, i, average)); };
  expect_each<H>(
      t, [&](size_t i, float got) { return narrow<H>(got).bits == narrow<H>(want(i)).bits; }, want,
      what + " (exact)");
}

// Per combine one rounding of at most half an ulp of the largest partial sum (bounded by the
// sum of magnitudes S), plus the reference's own rounding: world * ulp(S) covers the sum;
// the average adds one more rounding after the scaling.
template <typename H>
void expect_per_combine_rounded(const Tensor& t, int world, bool average, const std::string& what) {
  auto want = [&](size_t i) { return f32_reduction<H>(world, i, average); };
  expect_each<H>(
      t,
      [&](size_t i, float got) {
        float s = 0;
        for (int r = 0; r < world; ++r) s += std::fabs(value<H>(r, i));
        const float tol = average ? 2.0f * half_ulp<H>(s) : float(world) * half_ulp<H>(s);
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

template <typename H>
void expect_patterns(const Tensor& t, const std::function<uint16_t(size_t)>& want,
                     const std::string& what) {
  const H* p = t.data<H>();
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

class HalfAllreduce : public ::testing::TestWithParam<bool> {
 protected:
  MpiProcessGroup pg{MPI_COMM_WORLD, options(GetParam())};
  int rank = pg.rank();
  int world = pg.size();

  // One rank (MPI_Allreduce of one rank: no combine) and the shared path round once.
  template <typename H>
  void expect_reduced(const Tensor& t, bool shared_buffer, bool average, const std::string& w) {
    if (world == 1 || (shared_buffer && pg.uses_shared_memory())) {
      expect_once_rounded<H>(t, world, average, w);
    } else {
      expect_per_combine_rounded<H>(t, world, average, w);
    }
    expect_same_bits_on_every_rank(t, w);
  }

  template <typename H>
  void allocated_buffers_sum_and_average() {
    for (size_t n : kSizes) {
      SCOPED_TRACE("n=" + std::to_string(n));
      const DType dt = dtype_of<H>::value;
      Tensor sum = pg.allocate(n, dt), avg = pg.allocate(n, dt);
      ASSERT_EQ(sum.str(), std::string(Half<H>::kName) + "[" + std::to_string(n) + "]");
      // A float32 all-reduce in flight beside them: the shared path keeps them apart.
      Tensor f = pg.allocate(n);
      f.fill_(float(rank + 1));
      fill<H>(sum, [&](size_t i) { return value<H>(rank, i); });
      fill<H>(avg, [&](size_t i) { return value<H>(rank, i); });
      auto ws = pg.allreduce(sum, ReduceOp::sum, "sum");
      auto wf = pg.allreduce(f, ReduceOp::sum, "f32");
      auto wa = pg.allreduce(avg, ReduceOp::avg, "avg");
      for (auto& w : {ws, wf, wa}) w->wait();
      expect_reduced<H>(sum, true, false, "sum");
      expect_reduced<H>(avg, true, true, "avg");
      const int one_to_world_sum = world * (world + 1) / 2;  // 1 + 2 + ... + world: exact
      EXPECT_EQ(f.f32()[n - 1], float(one_to_world_sum));
    }
  }

  template <typename H>
  void ordinary_tensors_go_through_mpi_allreduce() {
    for (size_t n : kSizes) {
      SCOPED_TRACE("n=" + std::to_string(n));
      Tensor sum = half_tensor<H>(n), avg = half_tensor<H>(n);
      fill<H>(sum, [&](size_t i) { return value<H>(rank, i); });
      fill<H>(avg, [&](size_t i) { return value<H>(rank, i); });
      auto ws = pg.allreduce(sum, ReduceOp::sum, "sum");
      auto wa = pg.allreduce(avg, ReduceOp::avg, "avg");
      ws->wait();
      wa->wait();
      expect_reduced<H>(sum, false, false, "sum");
      expect_reduced<H>(avg, false, true, "avg");
    }
  }

  template <typename H>
  void broadcast_and_allgather_move_the_bits() {
    const size_t n = 1001;
    for (int root = 0; root < world; ++root) {
      Tensor t = half_tensor<H>(n);
      for (size_t i = 0; i < n; ++i) t.data<H>()[i].bits = pattern(rank, i);
      pg.broadcast(t, root, "bcast")->wait();
      expect_patterns<H>(
          t, [&](size_t i) { return pattern(root, i); }, "broadcast from " + std::to_string(root));
    }
    Tensor in = half_tensor<H>(n), out = half_tensor<H>(n * size_t(world));
    for (size_t i = 0; i < n; ++i) in.data<H>()[i].bits = pattern(rank, i);
    pg.allgather(in, out, "gather")->wait();
    expect_patterns<H>(
        out, [&](size_t i) { return pattern(int(i / n), i % n); }, "allgather");
    // In place: this rank's block of the output is the input.
    Tensor out2 = half_tensor<H>(n * size_t(world));
    Tensor mine = out2.view(size_t(rank) * n, {int64_t(n)});
    mine.copy_(in);
    pg.allgather(mine, out2, "gather in place")->wait();
    expect_patterns<H>(
        out2, [&](size_t i) { return pattern(int(i / n), i % n); }, "allgather in place");
  }

  template <typename H>
  void min_max_are_rejected_before_queueing() {
    auto before = pg.barrier();
    before->wait();
    Tensor t = half_tensor<H>(5);
    for (ReduceOp op : {ReduceOp::min, ReduceOp::max}) {
      try {
        pg.allreduce(t, op, "16-bit extremes");
        ADD_FAILURE() << "a " << Half<H>::kName << " " << reduce_op_name(op) << " was accepted";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(Half<H>::kName), std::string::npos) << e.what();
      }
    }
    auto w = pg.barrier();
    w->wait();
    EXPECT_EQ(w->seq(), before->seq() + 1);  // nothing was queued
  }
};

}  // namespace

TEST_P(HalfAllreduce, Bf16AllocatedBuffersSumAndAverage) {
  allocated_buffers_sum_and_average<bf16>();
}
TEST_P(HalfAllreduce, F16AllocatedBuffersSumAndAverage) {
  allocated_buffers_sum_and_average<f16>();
}

TEST_P(HalfAllreduce, Bf16OrdinaryTensorsGoThroughMpiAllreduce) {
  ordinary_tensors_go_through_mpi_allreduce<bf16>();
}
TEST_P(HalfAllreduce, F16OrdinaryTensorsGoThroughMpiAllreduce) {
  ordinary_tensors_go_through_mpi_allreduce<f16>();
}

TEST_P(HalfAllreduce, Bf16BroadcastFromEveryRootAndAllgatherMoveTheBits) {
  broadcast_and_allgather_move_the_bits<bf16>();
}
TEST_P(HalfAllreduce, F16BroadcastFromEveryRootAndAllgatherMoveTheBits) {
  broadcast_and_allgather_move_the_bits<f16>();
}

TEST_P(HalfAllreduce, Bf16MinMaxAreRejectedOnEveryRankBeforeQueueing) {
  min_max_are_rejected_before_queueing<bf16>();
}
TEST_P(HalfAllreduce, F16MinMaxAreRejectedOnEveryRankBeforeQueueing) {
  min_max_are_rejected_before_queueing<f16>();
}

// float16's range: a sum beyond 65504 overflows to infinity on every path (the hook divides
// first so that its sums stay in range), identically on every rank.
TEST_P(HalfAllreduce, F16SumsPast65504BecomeInfinityOnEveryRank) {
  Tensor shm = pg.allocate(2, DType::f16), plain = half_tensor<f16>(2);
  for (Tensor* t : {&shm, &plain}) {
    t->data<f16>()[0] = float_to_f16(40000.0f);
    t->data<f16>()[1] = float_to_f16(-40000.0f);
  }
  auto w1 = pg.allreduce(shm, ReduceOp::sum, "shared overflow");
  auto w2 = pg.allreduce(plain, ReduceOp::sum, "overflow");
  w1->wait();
  w2->wait();
  for (Tensor* t : {&shm, &plain}) {
    if (world == 1) {
      EXPECT_EQ(f16_to_float(t->data<f16>()[0]), 40000.0f);
    } else {
      EXPECT_EQ(t->data<f16>()[0].bits, 0x7c00u) << t->str();
      EXPECT_EQ(t->data<f16>()[1].bits, 0xfc00u) << t->str();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(SharedMemory, HalfAllreduce, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "on" : "off"; });

template <typename H>
void counts_above_the_limit_go_in_chunks() {
  for (bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "shared memory on" : "shared memory off");
    MpiProcessGroup pg(MPI_COMM_WORLD, options(shared, 1000));
    const int rank = pg.rank(), world = pg.size();
    for (size_t n : {size_t(999), size_t(1000), size_t(1001), size_t(65537)}) {
      SCOPED_TRACE("n=" + std::to_string(n));
      Tensor plain = half_tensor<H>(n), shm = pg.allocate(n, dtype_of<H>::value);
      fill<H>(plain, [&](size_t i) { return value<H>(rank, i); });
      fill<H>(shm, [&](size_t i) { return value<H>(rank, i); });
      Tensor b = half_tensor<H>(n), in = half_tensor<H>(n), out = half_tensor<H>(n * size_t(world));
      for (size_t i = 0; i < n; ++i) {
        b.data<H>()[i].bits = pattern(rank, i);
        in.data<H>()[i].bits = pattern(rank, i);
      }
      auto w1 = pg.allreduce(plain, ReduceOp::avg, "chunked avg");
      auto w2 = pg.allreduce(shm, ReduceOp::sum, "shared sum");
      auto w3 = pg.broadcast(b, world - 1, "chunked bcast");
      auto w4 = pg.allgather(in, out, "chunked gather");
      for (auto& w : {w1, w2, w3, w4}) w->wait();
      if (world == 1) {
        expect_once_rounded<H>(plain, world, true, "chunked avg");
      } else {
        expect_per_combine_rounded<H>(plain, world, true, "chunked avg");
      }
      expect_same_bits_on_every_rank(plain, "chunked avg");
      if (world == 1 || pg.uses_shared_memory()) {
        expect_once_rounded<H>(shm, world, false, "shared sum");
      } else {
        expect_per_combine_rounded<H>(shm, world, false, "shared sum");
      }
      expect_patterns<H>(
          b, [&](size_t i) { return pattern(world - 1, i); }, "chunked broadcast");
      expect_patterns<H>(
          out, [&](size_t i) { return pattern(int(i / n), i % n); }, "chunked allgather");
    }
  }
}

TEST(HalfChunked, Bf16CountsAboveTheLimitGoInChunks) {
  counts_above_the_limit_go_in_chunks<bf16>();
}

TEST(HalfChunked, F16CountsAboveTheLimitGoInChunks) {
  counts_above_the_limit_go_in_chunks<f16>();
}
