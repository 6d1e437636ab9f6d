#include "runtime/comm/work.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

#include "runtime/core/clock.h"
#include "runtime/core/error.h"

namespace dp {

const char* work_state_name(WorkState s) {
  static const char* const names[] = {"queued", "running", "completed", "failed"};  // enum order
  return names[static_cast<int>(s)];
}

Work::Work(std::string description, uint64_t seq, std::chrono::milliseconds timeout,
           TimeoutReport report)
    : description_(std::move(description)),
      seq_(seq),
      timeout_(timeout),
      report_(std::move(report)),
      enqueue_us_(now_us()) {
  DP_CHECK(timeout_.count() > 0,
           "collective #{} ({}): its Work needs a positive timeout, got {} ms (nothing is waited "
           "for forever)",
           seq_, description_, timeout_.count());
}

void Work::wait() {
  wait(timeout_);
}

void Work::wait(std::chrono::milliseconds requested) {
  DP_CHECK(requested.count() > 0,
           "collective #{} ({}): wait() needs a positive timeout, got {} ms (nothing is waited "
           "for forever)",
           seq_, description_, requested.count());
  const std::chrono::milliseconds timeout = std::max(requested, wait_floor_);
  std::unique_lock<std::mutex> lock(mu_);
  const bool in_time = cv_.wait_for(lock, timeout, [&] { return done_; });
  std::exception_ptr error = error_;
  lock.unlock();  // the report reads this Work's status through the flight recorder
  if (in_time) {
    if (error) rethrow(error, nullptr);
    return;
  }
  const std::string report = report_ ? (*report_)(*this) : std::string();
  // The collective may have failed meanwhile by a deadline of its own: the shared-memory
  // barrier's is --timeout too, and its error names the rank that did not arrive, which
  // "did not complete" cannot.
  lock.lock();
  error = error_;
  lock.unlock();
  if (error) rethrow(error, &report);
  throw CollectiveTimeout(appended(
      fmt::format("collective #{} ({}) did not complete within {} s: a rank is behind, stuck or "
                  "dead (see the other ranks' messages)",
                  seq_, description_, double(timeout.count()) / 1000.0),
      report));
}

void Work::rethrow(const std::exception_ptr& error, const std::string* report) const {
  try {
    std::rethrow_exception(error);
  } catch (const CollectiveTimeout& e) {
    if (report) throw CollectiveTimeout(appended(e.what(), *report));
    throw CollectiveTimeout(appended(e.what(), report_ ? (*report_)(*this) : std::string()));
  }
}

std::string Work::appended(const std::string& message, const std::string& report) {
  return report.empty() ? message : message + "; " + report;
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
