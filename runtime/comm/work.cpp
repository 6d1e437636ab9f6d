#include "runtime/comm/work.h"

#include "runtime/core/clock.h"
#include "runtime/core/error.h"

namespace dp {

const char* work_state_name(WorkState s) {
  static const char* const names[] = {"queued", "running", "completed", "failed"};  // enum order
  return names[static_cast<int>(s)];
}

void Work::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (timeout.count() > 0) {
    if (!cv_.wait_for(lock, timeout, [&] { return done_; })) {
      fail(
          "collective #{} ({}) did not complete within {} s: a rank is behind, stuck or dead "
          "(see the other ranks' messages)",
          seq_, description_, timeout.count() / 1000.0);
    }
  } else {
    cv_.wait(lock, [&] { return done_; });
  }
  if (error_) std::rethrow_exception(error_);
}

bool Work::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

double Work::start_us() const {
  std::lock_guard<std::mutex> lock(mu_);
  return start_us_;
}

double Work::end_us() const {
  std::lock_guard<std::mutex> lock(mu_);
  return end_us_;
}

double Work::device_ms() const {
  std::lock_guard<std::mutex> lock(mu_);
  return device_ms_;
}

WorkStatus Work::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  WorkStatus st;
  st.start_us = start_us_;
  st.end_us = end_us_;
  if (done_) {
    st.state = error_ ? WorkState::failed : WorkState::completed;
  } else if (start_us_ != 0) {
    st.state = WorkState::running;
  }
  return st;
}

void Work::set_device_ms(double ms) {
  std::lock_guard<std::mutex> lock(mu_);
  device_ms_ = ms;
}

void Work::mark_started() {
  std::lock_guard<std::mutex> lock(mu_);
  start_us_ = now_us();
}

void Work::mark_completed(std::exception_ptr error) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    end_us_ = now_us();
    if (start_us_ == 0) start_us_ = end_us_;
    error_ = std::move(error);
    done_ = true;
  }
  cv_.notify_all();
}

}  // namespace dp
