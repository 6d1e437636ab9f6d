// runtime/train/checkpoint_lock.h: one run per checkpoint directory. flock conflicts between
// two open files of one process too, so a second lock here stands for a second run.
#include <gtest/gtest.h>

#include <unistd.h>

#include <memory>
#include <string>

#include "runtime/train/checkpoint_dir.h"
#include "runtime/train/checkpoint_lock.h"
#include "tests/support/temp_dir.h"

namespace dp {
namespace {

class CheckpointLock : public test::TempDirTest {};

TEST_F(CheckpointLock, ASecondRunIsRefusedNamingTheFirstUntilItEnds) {
  auto first = std::make_unique<CheckpointDirLock>(dir_);
  EXPECT_MENTIONS(test::error_of([&] { CheckpointDirLock second(dir_); }),
                  "--checkpoint-dir " + dir_ + " is in use by another run (host ");
  EXPECT_MENTIONS(test::error_of([&] { CheckpointDirLock second(dir_); }),
                  " pid " + std::to_string(::getpid()) + ", started ");
  first.reset();  // the run ended (a killed process's lock goes the same way)
  EXPECT_NO_THROW(CheckpointDirLock again(dir_));
}

TEST_F(CheckpointLock, TheLockFileIsNotACheckpoint) {
  CheckpointDirLock lock(dir_);
  write_text(path("step-00000002.ckpt"), "c");
  const std::vector<CheckpointEntry> found = list_checkpoints(dir_);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].step, 2u);
}

TEST_F(CheckpointLock, AMissingDirectoryIsAnErrorNamingIt) {
  EXPECT_MENTIONS(test::error_of([&] { CheckpointDirLock lock(path("no/such")); }),
                  "--checkpoint-dir " + path("no/such") + ": cannot open its lock file");
}

}  // namespace
}  // namespace dp
