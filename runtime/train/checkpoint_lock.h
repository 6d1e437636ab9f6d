#pragma once
// One run per checkpoint directory. Two runs writing one --checkpoint-dir (a short test run
// beside a long one, an sbatch script submitted twice) replaced each other's step-N.ckpt, and a
// restarted run's --resume auto then continued the other run's training with only a note about
// --steps. Rank 0 holds an exclusive flock on DIR/.dprun.lock for the whole run: the kernel
// releases it when the process ends however it ends, so there is no stale lock to judge.
#include <string>

namespace dp {

class CheckpointDirLock {
 public:
  // Throws dp::Error naming the directory and the run that holds it (host, PID, start) when
  // another live process holds the lock. A file system without locks (some network mounts),
  // or a lock file this user may not open, is a warning, not an error: the run goes on
  // unguarded.
  explicit CheckpointDirLock(const std::string& dir);
  ~CheckpointDirLock();
  CheckpointDirLock(const CheckpointDirLock&) = delete;
  CheckpointDirLock& operator=(const CheckpointDirLock&) = delete;

  // "DIR/.dprun.lock": not a checkpoint name, so listing, pruning and --resume ignore it.
  static constexpr const char* kFileName = ".dprun.lock";
  static std::string path_in(const std::string& dir);

 private:
  int fd_ = -1;
};

}  // namespace dp
