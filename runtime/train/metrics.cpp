#include "runtime/train/metrics.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "runtime/core/clock.h"
#include "runtime/core/error.h"
#include "runtime/core/log.h"

namespace dp {

namespace {

// JSON has no NaN or infinity: a diverged loss is written as null.
struct JsonNumber {
  double v;
};

}  // namespace

}  // namespace dp

template <>
struct fmt::formatter<dp::JsonNumber> : fmt::formatter<double> {
  template <typename Ctx>
  auto format(dp::JsonNumber n, Ctx& ctx) const {
    if (!std::isfinite(n.v)) return fmt::format_to(ctx.out(), "null");
    return fmt::format_to(ctx.out(), "{}", n.v);
  }
};

namespace dp {

void EpochLoss::add(double loss, bool was_skipped) {
  ++steps;
  if (was_skipped)
    ++skipped;
  else
    sum += loss;
}

double EpochLoss::mean() const {
  if (steps == 0) return 0;
  return steps > skipped ? sum / double(steps - skipped) : std::nan("");
}

// The file, the buffer and the background writer. Behind a pointer so that JsonLog moves
// while the thread keeps its address.
struct JsonLog::State {
  std::ofstream out;
  std::string path;
  fmt::memory_buffer buf;
  double last_flush_us = 0;
  std::string error;  // a failed background write, reported by the owner's next call
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread writer;

  void flush_locked() {
    out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
    out.flush();
    buf.clear();
    last_flush_us = now_us();
    if (!out.good() && error.empty())
      error = fmt::format("--log-json {}: write failed (disk full?)", path);
  }
  // The step lines of a run whose steps take longer than a second, or that stalled, reach
  // the file within a second of being written all the same.
  void background() {
    std::unique_lock<std::mutex> lock(mu);
    while (!stop) {
      cv.wait_for(lock, std::chrono::milliseconds(250));
      if (buf.size() > 0 && now_us() - last_flush_us > 1e6) flush_locked();
    }
  }
  void throw_if_failed() {
    if (!error.empty()) throw Error(error);
  }
};

JsonLog::JsonLog() = default;
JsonLog::JsonLog(JsonLog&&) noexcept = default;
JsonLog& JsonLog::operator=(JsonLog&&) noexcept = default;

namespace {

// A run killed while it wrote (SIGKILL, the OOM killer, Slurm's KILL after its grace period)
// can leave its log ending inside a record: cut the file after its last whole line, so that
// what the resumed run appends (its resume marker first) starts a line of its own. The torn
// record cannot be read by anyone; it belongs to a step the resumed run does again.
void drop_torn_last_line(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return;  // no file yet: opening it for appending creates it
  struct stat st {};
  const off_t end = ::fstat(fd, &st) == 0 ? st.st_size : 0;
  char last = '\n';
  if (end > 0 && ::pread(fd, &last, 1, end - 1) != 1) last = '\n';  // unreadable: as it is
  off_t keep = 0;  // just after the last line end; 0 when there is none
  for (off_t pos = end; last != '\n' && pos > 0 && keep == 0;) {
    char buf[4096];
    const off_t from = std::max<off_t>(0, pos - off_t(sizeof buf));
    if (::pread(fd, buf, size_t(pos - from), from) != pos - from) {
      ::close(fd);
      return;
    }
    for (off_t i = pos - from; i-- > 0 && keep == 0;) {
      if (buf[i] == '\n') keep = from + i + 1;
    }
    pos = from;
  }
  const bool cut = last != '\n' && ::ftruncate(fd, keep) == 0;
  const int err = errno;
  ::close(fd);
  if (last == '\n') return;
  DP_CHECK(cut,
           "--log-json {}: cannot remove the unfinished record a killed run left at its end: {}",
           path, std::strerror(err));
  log::warn("--log-json {}: removed {} bytes of a record that a killed run left unfinished", path,
            end - keep);
}

}  // namespace

JsonLog::JsonLog(const std::string& path, bool append) : state_(std::make_unique<State>()) {
  State& st = *state_;
  if (append) drop_torn_last_line(path);
  st.out.open(path, append ? std::ios::app : std::ios::trunc);
  st.path = path;
  DP_CHECK(st.out.is_open(), "--log-json {}: cannot open the file for writing", path);
  st.last_flush_us = now_us();
  st.writer = std::thread([&st] { st.background(); });
}

JsonLog::~JsonLog() {
  if (!state_) return;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_one();
  state_->writer.join();
  std::lock_guard<std::mutex> lock(state_->mu);
  // A destructor must not throw; a failed write was reported by the last flush().
  state_->flush_locked();
}

bool JsonLog::is_open() const {
  return state_ != nullptr;
}

void JsonLog::write_step(const StepMetrics& m) {
  using N = JsonNumber;
  std::lock_guard<std::mutex> lock(state_->mu);
  fmt::memory_buffer& buf = state_->buf;
  fmt::format_to(std::back_inserter(buf),
                 R"({{"type":"step","step":{},"epoch":{},"loss":{},"lr":{},"samples_per_s":{},)"
                 R"("step_ms":{},"wall_s":{},"data_ms":{},"forward_ms":{},"backward_ms":{},)"
                 R"("optimizer_ms":{},"comm_ms":{},"exposed_comm_ms":{},"other_wait_ms":{},)"
                 R"("overlap":{})",
                 m.step, m.epoch, N{m.loss}, N{m.lr}, N{m.samples_per_s}, N{m.step_ms}, N{m.wall_s},
                 N{m.data_ms}, N{m.forward_ms}, N{m.backward_ms}, N{m.optimizer_ms}, N{m.comm_ms},
                 N{m.exposed_comm_ms}, N{m.other_wait_ms}, N{m.overlap});
  if (m.tokens_per_s > 0)
    fmt::format_to(std::back_inserter(buf), R"(,"tokens_per_s":{})", N{m.tokens_per_s});
  if (m.skipped) fmt::format_to(std::back_inserter(buf), R"(,"skipped":true)");
  fmt::format_to(std::back_inserter(buf), "}}\n");
  if (now_us() - state_->last_flush_us > 1e6) state_->flush_locked();
  state_->throw_if_failed();
}

void JsonLog::write(const nlohmann::json& record) {
  std::string line = record.dump() + "\n";
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->buf.append(line.data(), line.data() + line.size());
  state_->flush_locked();
  state_->throw_if_failed();
}

void JsonLog::flush() {
  if (!state_) return;
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->flush_locked();
  state_->throw_if_failed();
}

}  // namespace dp
