#pragma once
// The shared-memory all-reduce's control window (runtime/comm/shm_allreduce.h), as every
// rank of the node maps it: internal to shm_allreduce.cpp and shm_barrier.cpp.
//
// Layout, in rank 0's segment:
//   [0, 64)                     Control: the barrier word, the futex word, the poison word
//   64 * (1 + r)                Slot of rank r: what it is doing, its fingerprint (a line)
//   64 * (1 + n)                PoisonNote: who poisoned the group, in words
//   ... + kNoteBytes            Record of rank r for seq parity p at index 2r + p: its
//                               collective's description, written only after a mismatch
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/comm/shm_allreduce.h"

namespace dp {

namespace shm_layout {

constexpr size_t kLine = 64;
constexpr size_t kNoteBytes = 4 * kLine;
constexpr size_t kRecordBytes = 4 * kLine;

// The control block lives in memory several processes map, so its atomics must work by
// address alone, without any per-process lock: only lock-free atomics are address-free.
static_assert(std::atomic<uint64_t>::is_always_lock_free, "64-bit atomics must be lock-free");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "32-bit atomics must be lock-free");
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "futex word must be 32 bits");

inline size_t control_bytes(int ranks) {
  return kLine * size_t(1 + ranks) + kNoteBytes + kRecordBytes * 2 * size_t(ranks);
}

// The barriers' kinds: the phase a slot reports and the name an error gives.
enum Barrier : int {
  kFirst = 1,   // barrier 1 of an all-reduce: every rank launched it, gradients final
  kSecond = 2,  // barrier 2: every slice reduced
  kCheck = 3,   // the one barrier of check(): every rank launched a collective that MPI moves
  kNames = 4,   // after a mismatch: every rank wrote its collective's description
};
const char* barrier_name(int which);

// A rank's slot progress once it has arrived at barrier `which` of collective `seq`
// (Slot::progress: seq * 4 + phase).
inline uint64_t progress_at(uint64_t seq, int which) {
  return seq * 4 + uint64_t(which == kSecond ? 2 : 1);
}

// Of `size` ranks whose progress `progress_of(q)` gives, the first other than `self` that has
// not reached `here` (a barrier's progress_at) and has not given up there, or -1; `others` gets
// how many more have not. A rank that arrived and gave up (phase 0 of this collective) is
// waiting too, not late: with more than 2 ranks the flight recorder must not name it.
template <class ProgressOf>
int first_missing(int size, int self, uint64_t here, ProgressOf progress_of, int* others) {
  int first = -1;
  *others = 0;
  const uint64_t gave_up_here = here / 4 * 4;
  for (int q = 0; q < size; ++q) {
    const uint64_t p = progress_of(q);
    if (q == self || p >= here || (p != 0 && p == gave_up_here)) continue;
    if (first < 0) {
      first = q;
    } else {
      ++*others;
    }
  }
  return first;
}

// `dst` of `capacity` bytes gets `text`, cut (with "...") to fit, NUL-terminated.
void copy_text(char* dst, size_t capacity, const std::string& text);
std::string read_text(const char* src, size_t capacity);

}  // namespace shm_layout

struct ShmAllreduce::Control {
  // generation << 32 | ranks arrived at the current barrier. One word, changed by CAS only,
  // so that "the last rank arrives: reset the count, next generation" and "a timed-out rank
  // withdraws" are each atomic and can never both succeed.
  std::atomic<uint64_t> state{0};
  std::atomic<uint32_t> wake{0};      // the generation's low bits, for futex sleepers
  std::atomic<uint32_t> sleepers{0};  // ranks in (or about to enter) a futex wait
  // 0 while healthy; else seq << 20 | barrier << 16 | (rank + 1) of the first timeout. Set
  // once, by CAS, never cleared.
  std::atomic<uint64_t> poison{0};
};

// One per rank, on its own cache line, written only by that rank: what it is doing
// (`progress` = seq * 4 + phase: 1 at the first barrier, 2 at barrier 2, 3 done, 0 timed
// out), which names the ranks a timeout waited for, and the fingerprint of its collective
// (by seq parity: a rank gone on to the next collective never overwrites the one the others
// may still compare). Written before the first barrier, read after it. Relaxed atomics, so
// that even a rank that timed out and moved on races with nobody.
struct ShmAllreduce::Slot {
  std::atomic<uint64_t> progress{0};
  std::atomic<uint64_t> hash[2] = {};
};

// The poisoning rank's description of the collective it gave up on and of the timeout it
// waited (a barrier's own may differ from the group's), published (`ready`) after both, by the
// rank whose CAS set the poison word.
struct ShmAllreduce::PoisonNote {
  std::atomic<uint32_t> ready{0};
  int64_t timeout_ms = 0;
  char what[shm_layout::kNoteBytes - 2 * sizeof(int64_t)] = {};
};

// A rank's description of its collective, written only when the fingerprints differ
// (every rank then knows), before the kNames barrier, and read after it: the arrival's
// release and the barrier's acquire order the plain text.
struct ShmAllreduce::Record {
  char what[shm_layout::kRecordBytes] = {};
};

}  // namespace dp
