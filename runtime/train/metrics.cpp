#include "runtime/train/metrics.h"

#include <cmath>
#include <iterator>

#include <nlohmann/json.hpp>

#include "runtime/core/clock.h"
#include "runtime/core/error.h"

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

JsonLog::JsonLog(const std::string& path, bool append)
    : out_(path, append ? std::ios::app : std::ios::trunc), path_(path) {
  DP_CHECK(out_.is_open(), "--log-json {}: cannot open the file for writing", path);
  last_flush_us_ = now_us();
}

JsonLog::~JsonLog() {
  if (out_.is_open()) {
    try {
      flush();
    } catch (const Error&) {
      // A destructor must not throw; the failed write was reported by the last flush().
    }
  }
}

void JsonLog::write_step(const StepMetrics& m) {
  using N = JsonNumber;
  fmt::format_to(std::back_inserter(buf_),
                 R"({{"type":"step","step":{},"epoch":{},"loss":{},"lr":{},"samples_per_s":{},)"
                 R"("step_ms":{},"wall_s":{},"data_ms":{},"forward_ms":{},"backward_ms":{},)"
                 R"("optimizer_ms":{},"comm_ms":{},"exposed_comm_ms":{},"other_wait_ms":{},)"
                 R"("overlap":{}}})"
                 "\n",
                 m.step, m.epoch, N{m.loss}, N{m.lr}, N{m.samples_per_s}, N{m.step_ms}, N{m.wall_s},
                 N{m.data_ms}, N{m.forward_ms}, N{m.backward_ms}, N{m.optimizer_ms}, N{m.comm_ms},
                 N{m.exposed_comm_ms}, N{m.other_wait_ms}, N{m.overlap});
  if (m.tokens_per_s > 0) {
    buf_.resize(buf_.size() - 2);  // reopen the object: drop "}\n"
    fmt::format_to(std::back_inserter(buf_),
                   R"(,"tokens_per_s":{}}})"
                   "\n",
                   N{m.tokens_per_s});
  }
  if (now_us() - last_flush_us_ > 1e6) flush();
}

void JsonLog::write(const nlohmann::json& record) {
  std::string line = record.dump() + "\n";
  buf_.append(line.data(), line.data() + line.size());
  flush();
}

void JsonLog::flush() {
  out_.write(buf_.data(), static_cast<std::streamsize>(buf_.size()));
  out_.flush();
  buf_.clear();
  last_flush_us_ = now_us();
  DP_CHECK(out_.good(), "--log-json {}: write failed (disk full?)", path_);
}

}  // namespace dp
