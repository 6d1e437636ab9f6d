#pragma once
// A full disk inside one test, without a mount: RLIMIT_FSIZE makes every write past `bytes`
// fail (EFBIG), as ENOSPC would. SIGXFSZ, which would otherwise kill the process, is ignored
// meanwhile. Process-wide: hold it only around the write under test.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>

namespace dp::test {

class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    EXPECT_EQ(getrlimit(RLIMIT_FSIZE, &old_), 0);
    rlimit lowered = old_;
    lowered.rlim_cur = bytes;
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &lowered), 0);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &old_);
    std::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit old_{};
  void (*old_handler_)(int) = SIG_DFL;
};

}  // namespace dp::test
