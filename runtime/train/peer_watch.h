#pragma once
// The survivors of a killed rank say which rank is gone. mpirun answers a rank killed with -9
// by sending SIGTERM to the others and SIGKILL one second later (odls_base_sigkill_timeout):
// a survivor waiting for the step boundary's agreement (Trainer's 10 s deadline after a signal)
// or for a collective is killed before it can say anything, and over MPI/TCP (--no-shm,
// several hosts) no barrier names the rank that never arrived either.
//
// Every rank's (host, pid, pid space) travels with the start-up header's exchange (no
// collective of its own). After a signal, a watch thread checks with kill(pid, 0) which ranks
// IN THIS PID SPACE are gone (ESRCH); a rank on another host, or in another pid namespace of
// this one (containers that share the node's hostname, e.g. Docker --net=host, Kubernetes
// hostNetwork), cannot be checked from here, and the message says so. A gone peer means that no
// checkpoint can be agreed on: the survivor says so at once and ends the job, non-zero, starting no
// checkpoint.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace dp {

struct PeerProcess {
  std::string host;
  int64_t pid = 0;
  // Where `pid` means something: this_pid_space() of the rank. Two machines may share a
  // hostname, and two containers of one machine a hostname but not their pids.
  std::string pid_space;
};

// The pid namespace (/proc/self/ns/pid) and the boot (/proc/sys/kernel/random/boot_id) this
// process runs in; "" when unreadable (then a peer's pid is trusted on its hostname alone).
std::string this_pid_space();

// kill(pid, 0): false only when no such process exists (ESRCH); EPERM means it exists.
bool process_exists(int64_t pid);

// What rank `self` can tell about the other ranks.
struct PeerVerdict {
  // "rank 1 (pid 1234 on host0) is gone", "ranks 1 (pid ..) and 2 (pid ..) are gone"; "" when
  // every rank of this host is alive.
  std::string gone;
  // "cannot tell whether rank 2 (pid 99 on host1) is alive: another host" (or "another pid
  // namespace"); "" when every rank runs in this pid space.
  std::string unknown;
  // Both, or what holds when none is gone ("every other rank on host0 is alive").
  std::string text;
};
PeerVerdict check_peers(const std::vector<PeerProcess>& peers, int self,
                        const std::function<bool(int64_t)>& exists = process_exists);

class PeerWatch {
 public:
  // `on_gone(verdict)` runs on the watch's thread, at most once: when a preemption signal has
  // been received, the ranks have not agreed on a stop yet (agreed()) and a rank on this host
  // is gone. It is expected to end the job (it must not throw).
  PeerWatch(std::vector<PeerProcess> peers, int self,
            std::function<void(const PeerVerdict&)> on_gone);
  ~PeerWatch();  // stops the thread
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;

  // Every rank reached the step boundary that stops the run: a peer that exits now has
  // finished, and the checkpoint that follows is valid. The watch does nothing from here on.
  void agreed() { agreed_ = true; }
  // Held while a checkpoint file is written: the watch ends the job only outside of it, so
  // that a checkpoint is either complete or never started.
  std::mutex& write_lock() { return write_lock_; }

 private:
  void run();

  std::vector<PeerProcess> peers_;
  int self_;
  std::function<void(const PeerVerdict&)> on_gone_;
  std::atomic<bool> agreed_{false};
  std::mutex write_lock_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace dp
