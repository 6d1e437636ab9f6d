// The shared-memory group's barriers, its desync check and its poisoning
// (runtime/comm/shm_allreduce.h says why; runtime/comm/shm_control.h has the layout).
#include <sched.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstring>
#include <ctime>
#include <exception>
#include <new>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "runtime/comm/flight_recorder.h"
#include "runtime/comm/shm_control.h"
#include "runtime/comm/work.h"
#include "runtime/core/cpu_relax.h"
#include "runtime/core/error.h"

namespace dp {

namespace {

// Sleeps while *word == expected, at most `timeout`. Spurious returns are fine: the caller
// re-checks. The futex is not FUTEX_PRIVATE: the word is shared between processes.
void sleep_while_equal(std::atomic<uint32_t>& word, uint32_t expected,
                       std::chrono::nanoseconds timeout) {
#if defined(__linux__)
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1000000000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1000000000);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT, expected, &ts, nullptr, 0);
#else
  (void)word;
  (void)expected;
  std::this_thread::sleep_for(std::min(timeout, std::chrono::nanoseconds(50000)));
#endif
}

void wake_all(std::atomic<uint32_t>& word) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}

uint64_t poison_word(uint64_t seq, int which, int rank) {
  return seq << 20 | uint64_t(which & 0xf) << 16 | uint64_t(rank + 1);
}

// What a long barrier wait notes in the flight recorder (the ranks it waits for), forgotten
// when the wait completes. A wait that ends in an error (its timeout, a poisoned group) keeps
// its note, marked given up: the Work fails only after this, and a caller's Work::wait timing
// out in between must still name the late rank. Nothing is noted while the wait is short.
class NotedWait {
 public:
  explicit NotedWait(FlightRecorder* recorder) : recorder_(recorder) {}
  ~NotedWait() {
    if (!noted_) return;
    if (std::uncaught_exceptions() > uncaught_) {
      recorder_->set_gave_up();
    } else {
      recorder_->set_waiting_for(-1, "");
    }
  }
  NotedWait(const NotedWait&) = delete;
  NotedWait& operator=(const NotedWait&) = delete;
  void note(int peer, int others, const char* where) {
    if (!recorder_ || peer < 0) return;
    recorder_->set_waiting_at(peer, others, where);
    noted_ = true;
  }

 private:
  FlightRecorder* recorder_;
  const int uncaught_ = std::uncaught_exceptions();  // at construction
  bool noted_ = false;
};

}  // namespace

namespace shm_layout {

const char* barrier_name(int which) {
  switch (which) {
    case kFirst:
      return "barrier 1 of 2 (all ranks launched the collective)";
    case kSecond:
      return "barrier 2 of 2 (all slices reduced)";
    case kNames:
      return "the desync check's second barrier (all ranks described their collective)";
    default:
      return "the check barrier (all ranks launched the collective)";
  }
}

void copy_text(char* dst, size_t capacity, const std::string& text) {
  if (text.size() < capacity) {
    std::memcpy(dst, text.c_str(), text.size() + 1);
    return;
  }
  const size_t keep = capacity - 4;
  std::memcpy(dst, text.data(), keep);
  std::memcpy(dst + keep, "...", 4);
}

std::string read_text(const char* src, size_t capacity) {
  return std::string(src, strnlen(src, capacity));
}

}  // namespace shm_layout

using namespace shm_layout;

ShmAllreduce::Control& ShmAllreduce::control() const {
  return *std::launder(reinterpret_cast<Control*>(control_base_));
}

ShmAllreduce::Slot& ShmAllreduce::slot(int rank) const {
  return *std::launder(reinterpret_cast<Slot*>(control_base_ + kLine * size_t(1 + rank)));
}

ShmAllreduce::PoisonNote& ShmAllreduce::note() const {
  return *std::launder(reinterpret_cast<PoisonNote*>(control_base_ + kLine * size_t(1 + size_)));
}

ShmAllreduce::Record& ShmAllreduce::record(int rank, uint64_t seq) const {
  const size_t index = 2 * size_t(rank) + size_t(seq % 2);
  return *std::launder(reinterpret_cast<Record*>(control_base_ + kLine * size_t(1 + size_) +
                                                 kNoteBytes + kRecordBytes * index));
}

void ShmAllreduce::poison(const Fingerprint& fp, int which, std::chrono::milliseconds timeout) {
  Control& c = control();
  uint64_t healthy = 0;
  if (c.poison.compare_exchange_strong(healthy, poison_word(fp.seq, which, rank_),
                                       std::memory_order_acq_rel)) {
    PoisonNote& n = note();
    copy_text(n.what, sizeof(n.what), fp.text());
    n.timeout_ms = int64_t(timeout.count());
    n.ready.store(1, std::memory_order_release);
  }
  // Sleepers wake and see it now rather than at their next time check.
  c.wake.fetch_add(1, std::memory_order_seq_cst);
  wake_all(c.wake);
}

void ShmAllreduce::throw_if_poisoned(const Fingerprint& fp) const {
  const uint64_t w = control().poison.load(std::memory_order_acquire);
  if (w == 0) return;
  const int by = int(w & 0xffff) - 1;
  const int which = int((w >> 16) & 0xf);
  const uint64_t seq = w >> 20;
  const PoisonNote& n = note();
  // The poisoner writes its note right after winning the poison word; a reader that got here
  // in between (seen under ASan's slow-down, with the poisoner descheduled) waits a moment for
  // it, so that every rank names the collective. A poisoner that died in between leaves "#seq".
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  while (!n.ready.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  const bool ready = n.ready.load(std::memory_order_acquire);
  const std::string what = ready ? read_text(n.what, sizeof(n.what)) : fmt::format("#{}", seq);
  const int64_t waited_ms = ready ? n.timeout_ms : int64_t(timeout_.count());
  throw CollectiveTimeout(fmt::format(
      "collective {}: the shared-memory group is poisoned: rank {}{} gave up waiting at {} of "
      "collective {} (timeout {} s). A timeout poisons the group for good on every rank, so "
      "that no rank's collective completes paired with another's next one: this group fails "
      "every later collective, and the buffers of collective #{} hold partial sums on every "
      "rank",
      fp.text(), name(by), by == rank_ ? " (this rank)" : "", barrier_name(which), what,
      double(waited_ms) / 1000.0, seq));
}

void ShmAllreduce::barrier(int which, const Fingerprint& fp, std::chrono::milliseconds timeout) {
  Control& c = control();
  // Before arriving: a rank that gave up on an earlier collective must never complete a
  // barrier that a late rank still counts as that collective's.
  throw_if_poisoned(fp);
  // Arrive. acq_rel: the release publishes this rank's buffer writes (gradients, reduced
  // slices), its slot and its record; the CAS chain is one release sequence, so whoever sees
  // the next generation has seen every rank's writes.
  uint64_t s = c.state.load(std::memory_order_relaxed);
  uint32_t gen = 0;
  for (;;) {
    gen = uint32_t(s >> 32);
    const bool last = uint32_t(s) + 1 == uint32_t(size_);
    const uint64_t next = last ? uint64_t(uint32_t(gen + 1)) << 32 : s + 1;
    if (c.state.compare_exchange_weak(s, next, std::memory_order_acq_rel,
                                      std::memory_order_relaxed)) {
      if (!last) break;
      c.wake.store(gen + 1, std::memory_order_seq_cst);
      if (c.sleepers.load(std::memory_order_seq_cst) > 0) wake_all(c.wake);
      return;
    }
  }

  // Wait: spin while the others are probably microseconds away, then yield (more ranks than
  // cores: the one we wait for may need this core), then sleep on a futex so that a long
  // wait (a bucket launched early in backward) costs the computing threads nothing. A
  // poisoned group never completes another barrier: leave at once.
  using clock = std::chrono::steady_clock;
  constexpr auto kSpin = std::chrono::microseconds(20);
  constexpr auto kYield = std::chrono::microseconds(200);
  constexpr auto kMaxSleep = std::chrono::milliseconds(50);
  const auto start = clock::now(), deadline = start + timeout;
  NotedWait noted(recorder_);
  for (;;) {
    for (int k = 0; k < 32; ++k) {
      if (uint32_t(c.state.load(std::memory_order_acquire) >> 32) != gen) return;
      cpu_relax();
    }
    throw_if_poisoned(fp);
    const auto now = clock::now();
    if (now >= deadline) break;
    if (now - start < kSpin) continue;
    if (now - start < kYield) {
      sched_yield();
      continue;
    }
    // Past the spinning, the others are late: say who, for a timeout on another thread.
    // Again before every sleep, as the late ones arrive.
    int others = 0;
    const int late = first_missing(
        size_, rank_, progress_at(fp.seq, which),
        [this](int q) { return slot(q).progress.load(std::memory_order_relaxed); }, &others);
    noted.note(late < 0 ? -1 : name(late), others, barrier_name(which));
    c.sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (c.wake.load(std::memory_order_seq_cst) == gen) {
      sleep_while_equal(c.wake, gen, std::min<clock::duration>(deadline - now, kMaxSleep));
    }
    c.sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }

  // Timed out: withdraw the arrival unless the barrier completed meanwhile, then poison
  // the group (withdrawn first: the barrier can then never complete without this rank).
  s = c.state.load(std::memory_order_acquire);
  for (;;) {
    if (uint32_t(s >> 32) != gen) return;
    if (c.state.compare_exchange_weak(s, s - 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      break;
    }
  }
  poison(fp, which, timeout);
  const uint64_t seq = fp.seq;
  slot(rank_).progress.store(seq * 4, std::memory_order_relaxed);  // phase 0: gave up
  const uint64_t here = progress_at(seq, which);
  std::string missing, gave_up;
  for (int q = 0; q < size_; ++q) {
    const uint64_t p = slot(q).progress.load(std::memory_order_relaxed);
    if (q == rank_ || p >= here) continue;
    if (p / 4 == seq && p % 4 == 0) {
      gave_up += fmt::format("{}{}", gave_up.empty() ? "" : ", ", name(q));
      continue;
    }
    std::string where = p == 0        ? "in no shared-memory collective yet"
                        : p / 4 < seq ? fmt::format("last seen in collective #{}", p / 4)
                                      : std::string("still reducing its slice");
    missing += fmt::format("{}rank {} ({})", missing.empty() ? "" : ", ", name(q), where);
  }
  const double secs = double(timeout.count()) / 1000.0;
  const char* poisoned =
      ". This timeout poisons the shared-memory group: every later collective of it fails on "
      "every rank";
  if (missing.empty()) {
    throw CollectiveTimeout(fmt::format(
        "collective {}: shared-memory group: the other ranks ({}) gave up waiting at {} before "
        "this rank arrived; this rank is behind (see their messages), the timeout is {} s{}",
        fp.text(), gave_up.empty() ? std::string("?") : gave_up, barrier_name(which), secs,
        poisoned));
  }
  throw CollectiveTimeout(fmt::format(
      "collective {}: shared-memory group: {} did not arrive within {} s at {}; it is behind, "
      "stuck or dead (see its messages){}{}",
      fp.text(), missing, secs, barrier_name(which),
      gave_up.empty() ? std::string() : fmt::format("; rank(s) {} gave up waiting too", gave_up),
      poisoned));
}

void ShmAllreduce::arrive_and_compare(const Fingerprint& fp, int which,
                                      std::chrono::milliseconds timeout) {
  const std::string mismatch = arrive_and_compare_quiet(fp, which, timeout);
  if (!mismatch.empty()) throw CollectiveError(mismatch);
}

std::string ShmAllreduce::arrive_and_compare_quiet(const Fingerprint& fp, int which,
                                                   std::chrono::milliseconds timeout) {
  Slot& me = slot(rank_);
  const size_t parity = size_t(fp.seq % 2);
  me.hash[parity].store(fp.hash, std::memory_order_relaxed);
  me.progress.store(fp.seq * 4 + 1, std::memory_order_relaxed);
  barrier(which, fp, timeout);
  // Every rank's fingerprint of this parity is stable until the next barrier, which nobody
  // passes before every rank has compared: every rank reaches the same verdict, comparing
  // everyone with rank 0.
  const uint64_t h0 = slot(0).hash[parity].load(std::memory_order_relaxed);
  int other = 1;
  while (other < size_ && slot(other).hash[parity].load(std::memory_order_relaxed) == h0) ++other;
  if (other == size_) return std::string();
  // Only now are the descriptions worth their copies: every rank writes its own, and after
  // one more barrier reads the two it names.
  copy_text(record(rank_, fp.seq).what, kRecordBytes, fp.text());
  barrier(kNames, fp, timeout);
  me.progress.store(fp.seq * 4 + 3, std::memory_order_relaxed);
  return fingerprint_mismatch(name(0), read_text(record(0, fp.seq).what, kRecordBytes), name(other),
                              read_text(record(other, fp.seq).what, kRecordBytes));
}

std::string ShmAllreduce::compare(const Fingerprint& fp, bool first) {
  stall_.maybe_stall(rank_, fp.seq, 1);
  std::string mismatch = arrive_and_compare_quiet(fp, first ? kFirst : kCheck, timeout_);
  if (!first) slot(rank_).progress.store(fp.seq * 4 + 3, std::memory_order_relaxed);
  return mismatch;
}

void ShmAllreduce::finish(const Fingerprint& fp) {
  stall_.maybe_stall(rank_, fp.seq, 2);
  slot(rank_).progress.store(fp.seq * 4 + 2, std::memory_order_relaxed);
  barrier(kSecond, fp, timeout_);
  slot(rank_).progress.store(fp.seq * 4 + 3, std::memory_order_relaxed);
}

void ShmAllreduce::check(const Fingerprint& fp, std::chrono::milliseconds timeout) {
  stall_.maybe_stall(rank_, fp.seq, 1);
  arrive_and_compare(fp, kCheck, timeout.count() > 0 ? timeout : timeout_);
  slot(rank_).progress.store(fp.seq * 4 + 3, std::memory_order_relaxed);
}

}  // namespace dp
