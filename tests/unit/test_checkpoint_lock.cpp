// runtime/train/checkpoint_lock.h: one run per checkpoint directory. flock conflicts between
// two open files of one process too, so a second lock here stands for a second run.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
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

constexpr int kCannotSwitchUser = 90;  // root in a user namespace that does not map nobody

// Runs `fn` in a child process as a user other than the lock file's owner (nobody, where the
// tests run as root, whom file modes do not stop), and returns its exit status: 0 is success.
template <typename Fn>
int as_another_user(Fn&& fn) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0))
      ::_exit(kCannotSwitchUser);
    ::_exit(fn());
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// A directory a team shares: the first user's run left the lock file, 0644 less a strict umask.
// The next user's run may not write it, but flock needs only an open file: it still locks.
TEST_F(CheckpointLock, AnotherUsersLockFileIsLockedReadOnly) {
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  { CheckpointDirLock first(dir_); }
  const std::string file = CheckpointDirLock::path_in(dir_);
  ASSERT_EQ(::chmod(file.c_str(), 0444), 0);
  const int rc = as_another_user([&] {
    try {
      CheckpointDirLock held(dir_);
      // The read-only lock is a lock: a second run is refused while this one holds it.
      const std::string second = test::error_of([&] { CheckpointDirLock other(dir_); });
      return second.find("is in use by another run") != std::string::npos ? 0 : 2;
    } catch (...) {
      return 1;
    }
  });
  if (rc == kCannotSwitchUser) GTEST_SKIP() << "cannot become another user (uid 65534) here";
  EXPECT_EQ(rc, 0) << "1: the read-only lock failed; 2: it locked nothing";
}

// A lock file the user may not even read is a warning: the run goes on unguarded.
TEST_F(CheckpointLock, AnUnreadableLockFileIsAWarningNotAnError) {
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  { CheckpointDirLock first(dir_); }
  ASSERT_EQ(::chmod(CheckpointDirLock::path_in(dir_).c_str(), 0), 0);
  const int rc = as_another_user([&] {
    try {
      CheckpointDirLock unguarded(dir_);
      return 0;
    } catch (...) {
      return 1;
    }
  });
  if (rc == kCannotSwitchUser) GTEST_SKIP() << "cannot become another user (uid 65534) here";
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace dp
