// Module buffers under DDP (BatchNorm's running statistics): rank 0's are broadcast, one
// collective for all of them, and ranks whose buffer lists differ are told which buffer.
#include <gtest/gtest.h>
#include <mpi.h>

#include "runtime/comm/mpi_process_group.h"
#include "runtime/ddp/buffer_sync.h"
#include "tests/support/mpi_ranks.h"

using namespace dp;

namespace {

using test::rank;
using test::world;

const std::chrono::milliseconds kTimeout{30000};

}  // namespace

TEST(BufferSync, EveryRankEndsWithRankZerosBuffers) {
  MpiProcessGroup pg(MPI_COMM_WORLD);
  Buffer mean("bn1.running_mean", {3}), var("bn1.running_var", {2, 2});
  mean.value.fill_(float(rank() + 1));
  var.value.fill_(float(10 * (rank() + 1)));
  BufferSync sync({&mean, &var}, pg, kTimeout);
  EXPECT_EQ(sync.numel(), 7u);
  EXPECT_EQ(mean.value.to_vector(), std::vector<float>(3, 1.0f));
  EXPECT_EQ(var.value.to_vector(), std::vector<float>(4, 10.0f));
  // A forward on each rank updates its own copy; the next broadcast makes them rank 0's.
  mean.value.fill_(float(100 + rank()));
  var.value.f32()[3] = float(rank());
  sync.broadcast("test");
  EXPECT_EQ(mean.value.to_vector(), std::vector<float>(3, 100.0f));
  EXPECT_EQ(var.value.to_vector(), (std::vector<float>{10, 10, 10, 0}));
}

TEST(BufferSync, NoBuffersIsFine) {
  MpiProcessGroup pg(MPI_COMM_WORLD);
  BufferSync sync({}, pg, kTimeout);
  EXPECT_EQ(sync.numel(), 0u);
  sync.broadcast("test");
}

TEST(BufferSync, DifferentBufferListsAreReportedByName) {
  if (world() == 1) GTEST_SKIP() << "needs 2 or more ranks";
  MpiProcessGroup pg(MPI_COMM_WORLD);
  Buffer mean("bn1.running_mean", {rank() == 1 ? 4 : 3});
  try {
    BufferSync sync({&mean}, pg, kTimeout);
    ADD_FAILURE() << "buffer mismatch not detected";
  } catch (const CollectiveError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("buffer #0 is 'bn1.running_mean float32[3]' on rank 0 but "
                       "'bn1.running_mean float32[4]' on rank 1"),
              std::string::npos)
        << msg;
  }
}
