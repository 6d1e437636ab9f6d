#pragma once
// The flight recorder (DESIGN.md, "Desync and hangs"; PyTorch's NCCL flight recorder is the
// model): every process group keeps its last kCapacity collectives so that, on a timeout,
// each rank can say which collective it last completed and which one it is stuck in. Put
// side by side, the ranks' dumps show who fell behind: its last completed seq is lower.
//
// The ring holds the Works themselves, so recording is one shared_ptr copy (no allocation
// beyond the Work's own) and each entry's state and timestamps are whatever the
// communication thread last set on the Work. record() and the readers may run on different
// threads.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/comm/work.h"

namespace dp {

class FlightRecorder {
 public:
  static constexpr size_t kCapacity = 64;

  struct Entry {
    uint64_t seq = 0;
    std::string description;
    double enqueue_us = 0;
    WorkStatus status;
  };

  FlightRecorder();

  // Called by the process group when it hands out a Work; the oldest entry drops out.
  void record(WorkPtr work);
  // How many collectives were ever recorded (the ring holds the last kCapacity of them).
  uint64_t recorded() const;
  // The entries held, oldest first.
  std::vector<Entry> snapshot() const;
  // Times in the dump are relative to this (the recorder's creation, on now_us's clock).
  double origin_us() const { return origin_us_; }

  // One line for an error message: "rank R: last completed #N <description> at +T ms; #M
  // running for S s" (or queued / failed), taken at `now_us`.
  std::string summary(int rank, double now_us) const;
  // The full dump, one line per entry, oldest first, each prefixed
  // "dprun: flight recorder [rank R]: ".
  std::vector<std::string> dump_lines(int rank, double now_us) const;
  void dump(int rank, std::FILE* out) const;
  // What a collective timeout calls: the full dump to `out` the first time only (a group
  // whose collectives time out on several paths still dumps once), and the summary
  // every time. Thread-safe.
  std::string dump_once(int rank, std::FILE* out) const;

  // What the communication thread is blocked on right now: a message from `peer` (a rank of
  // the group) for `what` (a string literal), or nothing (peer < 0). The summary then says
  // "waits for rank P's message (what)": a stuck rank never reports itself (it is not
  // waiting, it is late), so its partners' messages must name it. Lock-free: set around
  // every blocking receive.
  void set_waiting_for(int peer, const char* what);
  int waiting_for() const { return waiting_peer_.load(std::memory_order_relaxed); }
  // The same for a shared-memory barrier: `peer` and `others` more ranks have not arrived at
  // `where` (a string literal); the summary says "waits in shared memory for rank P (and N
  // other ranks) to arrive at <where>". Cleared by set_waiting_for(-1, "").
  void set_waiting_at(int peer, int others, const char* where);
  // The wait noted last ended in an error (its timeout, a poisoned group): the note stays, as
  // "gave up waiting ...", until the next one. The Work fails only after the wait has ended,
  // and a caller's Work::wait whose deadline falls in between has nothing else naming the
  // late rank.
  void set_gave_up();

 private:
  void set_waiting(int peer, int others, const char* what);

  double origin_us_;
  mutable std::mutex mu_;
  std::array<WorkPtr, kCapacity> ring_;
  uint64_t count_ = 0;
  mutable std::atomic<bool> dumped_{false};
  std::atomic<int> waiting_peer_{-1};
  std::atomic<const char*> waiting_what_{""};
  std::atomic<int> waiting_others_{-1};  // -1: a message; else ranks missing besides the peer
  std::atomic<bool> gave_up_{false};
};

// Notes a blocking receive from `peer` in `recorder` (may be null) for its scope.
class WaitingFor {
 public:
  WaitingFor(FlightRecorder* recorder, int peer, const char* what) : recorder_(recorder) {
    if (recorder_) recorder_->set_waiting_for(peer, what);
  }
  ~WaitingFor() {
    if (recorder_) recorder_->set_waiting_for(-1, "");
  }
  WaitingFor(const WaitingFor&) = delete;
  WaitingFor& operator=(const WaitingFor&) = delete;

 private:
  FlightRecorder* recorder_;
};

}  // namespace dp
