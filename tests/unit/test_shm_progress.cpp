// Who a long shared-memory barrier wait names as late (shm_layout::first_missing): the rank
// that has not arrived, never one that arrived and gave up at the same barrier.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "runtime/comm/shm_control.h"

namespace dp {
namespace {

int missing(const std::vector<uint64_t>& progress, int self, uint64_t here, int* others) {
  return shm_layout::first_missing(
      int(progress.size()), self, here, [&](int q) { return progress[size_t(q)]; }, others);
}

TEST(ShmProgress, ProgressAtOrdersTheBarriersOfACollective) {
  using shm_layout::progress_at;
  EXPECT_EQ(progress_at(7, shm_layout::kFirst), 29u);
  EXPECT_EQ(progress_at(7, shm_layout::kCheck), 29u);
  EXPECT_EQ(progress_at(7, shm_layout::kSecond), 30u);
  EXPECT_LT(progress_at(7, shm_layout::kSecond), progress_at(8, shm_layout::kFirst) - 1);
}

TEST(ShmProgress, NamesTheFirstRankThatHasNotArrivedAndCountsTheRest) {
  const uint64_t here = shm_layout::progress_at(5, shm_layout::kFirst);
  int others = -1;
  // Rank 0 waits; 1 and 3 are still in collective 4; 2 has arrived.
  EXPECT_EQ(missing({here, 4 * 4 + 3, here, 4 * 4 + 2}, 0, here, &others), 1);
  EXPECT_EQ(others, 1);
  // A rank that never reached any collective (progress 0) is late too.
  EXPECT_EQ(missing({here, here, 0}, 1, here, &others), 2);
  EXPECT_EQ(others, 0);
  // Everyone else has arrived, or gone past (barrier 2 of the same collective).
  EXPECT_EQ(missing({here, here + 1, here}, 0, here, &others), -1);
  EXPECT_EQ(others, 0);
}

TEST(ShmProgress, ARankThatGaveUpAtThisCollectiveIsNotNamed) {
  // 3 ranks at barrier 2 of collective 9: rank 1 timed out there (phase 0 of seq 9), rank 2 is
  // behind at barrier 1. The wait on rank 0 must name rank 2, not rank 1.
  const uint64_t here = shm_layout::progress_at(9, shm_layout::kSecond);
  int others = -1;
  EXPECT_EQ(missing({here, 9 * 4, 9 * 4 + 1}, 0, here, &others), 2);
  EXPECT_EQ(others, 0);
  // A timeout in an earlier collective (phase 0 of seq 8) is late, not waiting here.
  EXPECT_EQ(missing({here, 8 * 4, here}, 0, here, &others), 1);
  EXPECT_EQ(others, 0);
  // The waiting rank itself is never named, even if its own slot says it gave up.
  EXPECT_EQ(missing({9 * 4, here}, 0, here, &others), -1);
}

}  // namespace
}  // namespace dp
