#pragma once
// The handle of one asynchronous collective. The backend's communication thread marks it
// started and completed (with timestamps on dp::now_us's clock, so they can be laid next
// to the compute timeline) and stores an error if the collective failed.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/core/clock.h"
#include "runtime/core/error.h"

namespace dp {

enum class WorkState { queued, running, completed, failed };
const char* work_state_name(WorkState s);

// A collective that did not complete in time, or could not complete because another rank's
// timed out (a poisoned shared-memory group): the errors after which a rank's flight
// recorder is worth reading. Work::wait() dumps the recorder when it sees one.
class CollectiveTimeout : public Error {
 public:
  explicit CollectiveTimeout(const std::string& what) : Error(what) {}
};

// One consistent reading of a Work's lifecycle (taken under its lock), for the flight
// recorder, which reads while the communication thread updates.
struct WorkStatus {
  WorkState state = WorkState::queued;
  double start_us = 0;  // 0 while queued
  double end_us = 0;    // 0 until completed or failed
};

class Work {
 public:
  // What wait() without an argument allows a Work that no process group gave a deadline.
  static constexpr std::chrono::milliseconds kDefaultTimeout{std::chrono::minutes(5)};
  // Called (outside the Work's lock) when a wait() times out or the Work failed with a
  // CollectiveTimeout; returns text appended to the error. The process group's writes its
  // flight recorder to stderr (once) and returns the recorder's one-line summary. Must not
  // throw. Shared: a group makes it once and each of its Works holds a reference (a
  // std::function of its own per Work would be a heap allocation per collective).
  using TimeoutReport = std::shared_ptr<const std::function<std::string(const Work&)>>;
  static TimeoutReport make_report(std::function<std::string(const Work&)> f) {
    return std::make_shared<const std::function<std::string(const Work&)>>(std::move(f));
  }

  // `timeout` is what wait() without an argument allows: the issuing group's timeout. It
  // must be positive: no Work is ever waited for without a deadline.
  explicit Work(std::string description, uint64_t seq = 0,
                std::chrono::milliseconds timeout = kDefaultTimeout, TimeoutReport report = {});

  // Blocks until the collective completed; rethrows its error. A collective that has not
  // completed after `timeout` (> 0; the no-argument form: the Work's own deadline) is a
  // hang: wait() throws a dp::CollectiveTimeout naming it instead of waiting forever, or the
  // collective's own error where it failed in the meantime (its own deadline fired too).
  void wait();
  void wait(std::chrono::milliseconds timeout);
  bool done() const;

  double enqueue_us() const { return enqueue_us_; }
  double start_us() const;  // when the communication thread began the collective
  double end_us() const;    // when it completed
  double duration_us() const { return end_us() - start_us(); }
  const std::string& description() const { return description_; }
  uint64_t seq() const { return seq_; }
  // The deadline wait() allows (and a backend's watchdog reads): the group's, or the floor.
  std::chrono::milliseconds timeout() const { return std::max(timeout_, wait_floor_); }
  // GPU time of the collective as the device measured it (NCCL), or -1 where none was
  // measured (the MPI backend, host-staged tensors).
  double device_ms() const;
  WorkStatus status() const;

  // Backend side.
  // The least any wait() allows, whatever its timeout: a group of one rank sets it (no peer
  // can be late there, so only a local hang, not a busy machine, may end the wait).
  void set_wait_floor(std::chrono::milliseconds floor) { wait_floor_ = floor; }
  void mark_started();
  void mark_completed(std::exception_ptr error = nullptr);
  void set_device_ms(double ms);

 private:
  // Rethrows the collective's `error`; a CollectiveTimeout with `report` appended (taken now
  // where null).
  [[noreturn]] void rethrow(const std::exception_ptr& error, const std::string* report) const;
  static std::string appended(const std::string& message, const std::string& report);

  std::string description_;
  uint64_t seq_;
  std::chrono::milliseconds timeout_;
  std::chrono::milliseconds wait_floor_{0};
  TimeoutReport report_;
  double enqueue_us_ = 0;
  double start_us_ = 0;
  double end_us_ = 0;
  double device_ms_ = -1;
  bool done_ = false;
  std::exception_ptr error_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
};

using WorkPtr = std::shared_ptr<Work>;

}  // namespace dp
