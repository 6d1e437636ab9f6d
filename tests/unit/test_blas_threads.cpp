// How many GEMM threads a rank takes: its share of the node's CPUs unless the user chose.
#include <gtest/gtest.h>

#include "runtime/ops/cpu/blas_threads.h"

namespace dp {
namespace {

TEST(BlasThreads, RanksShareTheCpusOfTheirMask) {
  // mpirun -np 4 --oversubscribe on 2 cores binds nothing: each rank sees both CPUs.
  EXPECT_EQ(choose_blas_threads(2, 4, 0, 2).threads, 1);
  EXPECT_EQ(choose_blas_threads(8, 2, 0, 8).threads, 4);
  EXPECT_EQ(choose_blas_threads(8, 3, 0, 8).threads, 2);
  EXPECT_EQ(choose_blas_threads(2, 4, 0, 2).reason,
            "2 CPU(s) in this rank's affinity mask, 4 rank(s) on this node");
}

TEST(BlasThreads, OneRankKeepsWhatTheLibraryStarted) {
  EXPECT_EQ(choose_blas_threads(2, 1, 0, 2).threads, 2);
  // A rank bound to one core (mpirun -np 2 on 2 cores binds by core) gets 1.
  EXPECT_EQ(choose_blas_threads(1, 2, 0, 2).threads, 1);
  // Never more than the library started with (its own cap, e.g. a build's MAX_THREADS).
  EXPECT_EQ(choose_blas_threads(64, 1, 0, 16).threads, 16);
}

TEST(BlasThreads, TheUsersChoiceWins) {
  EXPECT_EQ(choose_blas_threads(2, 4, 3, 3).threads, 3);
  EXPECT_EQ(choose_blas_threads(2, 4, 3, 3).reason, "as set in the environment");
}

TEST(BlasThreads, NonsenseCountsStillGiveOneThread) {
  EXPECT_EQ(choose_blas_threads(0, 0, 0, 0).threads, 1);
  EXPECT_EQ(choose_blas_threads(-1, 5, 0, 4).threads, 1);
}

}  // namespace
}  // namespace dp
