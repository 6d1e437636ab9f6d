// bench-allreduce's check values (launcher/bench_check_values.h): a correct all-reduce that
// rounds bfloat16 after every hop, in whatever order it adds the ranks, gets every sum exactly,
// at any rank count (the earlier values, (r + 1)(1 + i % 3), passed 256 from 22 ranks on, and
// MPI_Allreduce showed #wrong 960 at 32).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "launcher/bench_check_values.h"
#include "runtime/core/bf16.h"

using namespace dp;

namespace {

// Element i all-reduced in bfloat16 over the ranks in `order`, rounded after every addition
// (a ring's hops, MPI's bf16_sum).
float chain_sum(const CheckValues& v, const std::vector<int>& order, size_t i) {
  float acc = round_to_bf16(v.value(order[0], i));
  for (size_t k = 1; k < order.size(); ++k)
    acc = round_to_bf16(acc + round_to_bf16(v.value(order[k], i)));
  return acc;
}

// The same as a tree: halves summed separately, then added (recursive halving, NCCL's trees).
float tree_sum(const CheckValues& v, const std::vector<int>& ranks, size_t lo, size_t hi,
               size_t i) {
  if (hi - lo == 1) return round_to_bf16(v.value(ranks[lo], i));
  const size_t mid = lo + (hi - lo) / 2;
  return round_to_bf16(tree_sum(v, ranks, lo, mid, i) + tree_sum(v, ranks, mid, hi, i));
}

}  // namespace

TEST(BenchCheckValues, EveryOrderOfBf16HopsGivesTheSumAtAnyRankCount) {
  std::mt19937 rng(7);
  for (int world : {1, 2, 3, 6, 9, 16, 22, 32, 64, 65, 100, 257, 320, 1000}) {
    const CheckValues v(world);
    std::vector<int> ranks(static_cast<size_t>(world));
    std::iota(ranks.begin(), ranks.end(), 0);
    std::vector<std::vector<int>> orders = {ranks, {ranks.rbegin(), ranks.rend()}};
    for (int rotation : {1, world / 2, world - 1}) {  // a ring's reduce starts at every rank
      orders.push_back(ranks);
      std::rotate(orders.back().begin(), orders.back().begin() + rotation % world,
                  orders.back().end());
    }
    orders.push_back(ranks);
    std::shuffle(orders.back().begin(), orders.back().end(), rng);
    for (size_t i = 0; i < 600; ++i) {
      double exact = 0;
      for (int r = 0; r < world; ++r) exact += v.value(r, i);
      ASSERT_EQ(double(v.sum(i)), exact) << "world " << world << ", element " << i;
      ASSERT_EQ(round_to_bf16(v.sum(i)), v.sum(i)) << "world " << world << ", element " << i;
      for (const std::vector<int>& order : orders)
        ASSERT_EQ(chain_sum(v, order, i), v.sum(i)) << "world " << world << ", element " << i;
      ASSERT_EQ(tree_sum(v, orders.back(), 0, ranks.size(), i), v.sum(i))
          << "world " << world << ", element " << i;
    }
  }
}

TEST(BenchCheckValues, EveryRankCountsSomewhere) {
  // A rank left out of the all-reduce changes some sum: each adds a nonzero value to some
  // elements, and different ranks different values (a sum with a rank twice is off too).
  for (int world : {1, 2, 64, 65, 1000}) {
    const CheckValues v(world);
    for (int r = 0; r < world; ++r) {
      bool counts = false;
      for (size_t i = 0; i < 3 * size_t(world) && !counts; ++i) counts = v.value(r, i) != 0;
      EXPECT_TRUE(counts) << "world " << world << ", rank " << r;
    }
  }
  const CheckValues two(2);
  EXPECT_NE(two.value(0, 0), two.value(1, 0));
}

TEST(BenchCheckValues, AShiftedResultIsWrongAtEveryRankCount) {
  // A ring that puts a chunk where its neighbour's belongs, or a result off by some elements,
  // must show up in #wrong: the sums may not repeat with a shift of 1 or of a power of two (chunk
  // sizes are). They once summed to 6 everywhere at 3 ranks (12 at 6, ...), where a result
  // rotated by a chunk counted as right. Some element among the first 4096 must differ.
  auto shift_is_seen = [](const CheckValues& v, size_t shift) {
    for (size_t i = 0; i < 4096; ++i)
      if (v.sum(i + shift) != v.sum(i)) return true;
    return false;
  };
  for (int world : {1, 2, 3, 4, 6, 8, 9, 12, 64, 65, 192, 320, 1000}) {
    const CheckValues v(world);
    for (size_t shift = 1; shift <= (size_t(1) << 30); shift *= 2)
      EXPECT_TRUE(shift_is_seen(v, shift)) << "world " << world << ", shift " << shift;
  }
  for (int world = 1; world <= 2048; ++world) {  // every world up to 2048, fewer shifts
    const CheckValues v(world);
    for (size_t shift : {size_t(1), size_t(2), size_t(4), size_t(64), size_t(1) << 20})
      ASSERT_TRUE(shift_is_seen(v, shift)) << "world " << world << ", shift " << shift;
  }
}
