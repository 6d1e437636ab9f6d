#include "runtime/train/checkpoint_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "runtime/core/atomic_write.h"
#include "runtime/core/error.h"
#include "runtime/core/log.h"

namespace dp {

namespace {

// What the holder wrote: "host H pid P, started 2026-12-07 20:50:38 UTC", or "" when unreadable.
std::string holder_of(int fd) {
  char buf[256] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return "";
  std::string s(buf, size_t(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return s;
}

}  // namespace

std::string CheckpointDirLock::path_in(const std::string& dir) {
  return dir + "/" + kFileName;
}

CheckpointDirLock::CheckpointDirLock(const std::string& dir) {
  const std::string path = path_in(dir);
  // 0666 less the umask: in a directory a team shares, the next user's run must open the
  // file the first one left (flock needs no write access: read-only is the fallback).
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd_ < 0 && errno == EACCES) fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    const int err = errno;
    DP_CHECK(err == EACCES, "--checkpoint-dir {}: cannot open its lock file {}: {}", dir, path,
             std::strerror(err));
    log::warn(
        "--checkpoint-dir {}: cannot open its lock file {} ({}): make sure no other run "
        "writes this directory",
        dir, path, std::strerror(err));
    return;
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      const std::string holder = holder_of(fd_);
      ::close(fd_);
      fd_ = -1;
      fail(
          "--checkpoint-dir {} is in use by another run ({}): two runs writing one directory "
          "replace each other's checkpoints, and --resume auto would continue the other's "
          "training; give this run its own --checkpoint-dir, or wait for that run to end (if "
          "its host is gone and the lock outlived it, as a network file system's may, remove "
          "{})",
          dir, holder.empty() ? "its lock file " + path + " is held" : holder, path);
    }
    log::warn(
        "--checkpoint-dir {}: cannot lock {} ({}): make sure no other run writes this "
        "directory",
        dir, path, std::strerror(err));
    return;
  }
  const std::time_t now = std::time(nullptr);
  char when[64] = {};
  std::tm tm{};
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&now, &tm));
  const std::string host = host_tag();
  const std::string text =
      fmt::format("host {} pid {}, started {}\n", host.empty() ? "?" : host, ::getpid(), when);
  // Informational only (the flock is the lock): a failed write leaves an older text.
  if (::ftruncate(fd_, 0) == 0) {
    [[maybe_unused]] const ssize_t w = ::pwrite(fd_, text.data(), text.size(), 0);
  }
}

CheckpointDirLock::~CheckpointDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace dp
