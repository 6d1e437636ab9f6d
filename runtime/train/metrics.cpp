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
#include "runtime/core/json_write.h"
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
// can leave its log ending inside a record. What a run started with --resume appends (the
// resume marker first) must start a line of its own: a torn record is cut (nobody can read
// it, and it belongs to a step the resumed run does again); a whole record that lost only its
// line end gets it back. A last line that is no record at all means the file is not a dprun
// log, which is refused rather than cut.
void end_with_a_whole_line(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT)  // none yet: opening it for appending creates it
      log::warn("--log-json {}: cannot read it to check that it ends with a whole line: {}", path,
                std::strerror(errno));
    return;
  }
  struct stat st {};
  const off_t end = ::fstat(fd, &st) == 0 ? st.st_size : 0;
  // A record is a few hundred bytes: its tail lies in the last MiB.
  const off_t from = std::max<off_t>(0, end - (off_t(1) << 20));
  std::string tail(size_t(end - from), '\0');
  const bool read = ::pread(fd, tail.data(), tail.size(), from) == ssize_t(tail.size());
  const size_t nl = tail.rfind('\n');
  const size_t start = nl == std::string::npos ? 0 : nl + 1;
  if (!read || start == tail.size()) {  // unreadable (warned), empty, or a whole last line
    if (!read) log::warn("--log-json {}: cannot read its end: {}", path, std::strerror(errno));
    ::close(fd);
    return;
  }
  const std::string last = tail.substr(start);
  const bool record = last[0] == '{' && (nl != std::string::npos || from == 0);
  const bool whole = record && nlohmann::json::accept(last);
  const off_t keep = from + off_t(start);
  bool done = false;
  if (whole)
    done = ::pwrite(fd, "\n", 1, end) == 1;
  else if (record)
    done = ::ftruncate(fd, keep) == 0;
  const int err = errno;
  ::close(fd);
  DP_CHECK(record,
           "--log-json {}: its last line is not a JSON record, so it is not a log dprun wrote; "
           "a run started with --resume appends to its log: give --log-json that log or a new file",
           path);
  DP_CHECK(done, "--log-json {}: cannot end the record a killed run left unfinished: {}", path,
           std::strerror(err));
  if (whole)
    log::warn("--log-json {}: the last record had no line end (a run killed as it wrote it): added",
              path);
  else
    log::warn("--log-json {}: removed {} bytes of a record that a killed run left unfinished", path,
              end - keep);
}

}  // namespace

JsonLog::JsonLog(const std::string& path, bool append) : state_(std::make_unique<State>()) {
  State& st = *state_;
  if (append) end_with_a_whole_line(path);
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
                 R"({{"type":"step","step":{},"epoch":{},"loss":{},"lr":{},"grad_norm":{},)"
                 R"("samples_per_s":{},)"
                 R"("step_ms":{},"wall_s":{},"data_ms":{},"forward_ms":{},"backward_ms":{},)"
                 R"("optimizer_ms":{},"comm_ms":{},"exposed_comm_ms":{},"other_wait_ms":{},)"
                 R"("overlap":{})",
                 m.step, m.epoch, N{m.loss}, N{m.lr}, N{m.grad_norm}, N{m.samples_per_s},
                 N{m.step_ms}, N{m.wall_s}, N{m.data_ms}, N{m.forward_ms}, N{m.backward_ms},
                 N{m.optimizer_ms}, N{m.comm_ms}, N{m.exposed_comm_ms}, N{m.other_wait_ms},
                 N{m.overlap});
  if (m.tokens_per_s > 0)
    fmt::format_to(std::back_inserter(buf), R"(,"tokens_per_s":{})", N{m.tokens_per_s});
  if (m.skipped) fmt::format_to(std::back_inserter(buf), R"(,"skipped":true)");
  fmt::format_to(std::back_inserter(buf), "}}\n");
  if (now_us() - state_->last_flush_us > 1e6) state_->flush_locked();
  state_->throw_if_failed();
}

void JsonLog::write(const nlohmann::json& record) {
  std::string line = json_text(record) + "\n";
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
