#pragma once
// The handle of one asynchronous collective. The backend's communication thread marks it
// started and completed (with timestamps on dp::now_us's clock, so they can be laid next
// to the compute timeline) and stores an error if the collective failed.
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/core/clock.h"

namespace dp {

enum class WorkState { queued, running, completed, failed };
const char* work_state_name(WorkState s);

// One consistent reading of a Work's lifecycle (taken under its lock), for the flight
// recorder, which reads while the communication thread updates.
struct WorkStatus {
  WorkState state = WorkState::queued;
  double start_us = 0;  // 0 while queued
  double end_us = 0;    // 0 until completed or failed
};

class Work {
 public:
  explicit Work(std::string description, uint64_t seq = 0)
      : description_(std::move(description)), seq_(seq), enqueue_us_(now_us()) {}

  // Blocks until the collective completed; rethrows its error. A collective that has not
  // completed after `timeout` is a hang: wait() throws a dp::Error naming it instead of
  // waiting forever (timeout <= 0 waits forever).
  void wait(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  bool done() const;

  double enqueue_us() const { return enqueue_us_; }
  double start_us() const;  // when the communication thread began the collective
  double end_us() const;    // when it completed
  double duration_us() const { return end_us() - start_us(); }
  const std::string& description() const { return description_; }
  uint64_t seq() const { return seq_; }
  // GPU time of the collective as the device measured it (NCCL), or -1 where none was
  // measured (the MPI backend, host-staged tensors).
  double device_ms() const;
  WorkStatus status() const;

  // Backend side.
  void mark_started();
  void mark_completed(std::exception_ptr error = nullptr);
  void set_device_ms(double ms);

 private:
  std::string description_;
  uint64_t seq_;
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
