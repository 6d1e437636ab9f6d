#include "runtime/train/timeline.h"

#include <fmt/format.h>

#include "runtime/comm/gather_strings.h"
#include "runtime/core/atomic_write.h"
#include "runtime/core/boot_id.h"

namespace dp {

namespace {

// What ranks sharing one monotonic clock have in common: the kernel's boot id (a hostname may
// repeat across machines; containers of one host differ in hostname but share the clock).
std::string clock_domain() {
  const std::string id = boot_id();
  return id.empty() ? "host " + host_tag() : id;
}

}  // namespace

double Timeline::shared_origin(ProcessGroup& pg, double local_us,
                               std::chrono::milliseconds timeout) {
  const std::string mine = clock_domain();
  // "{}" writes the shortest text that reads back as the same double.
  const std::vector<std::string> all =
      allgather_strings(pg, fmt::format("{}\n{}", mine, local_us), timeout, "trace clock origin");
  for (const std::string& entry : all) {
    const size_t nl = entry.rfind('\n');
    if (nl != std::string::npos && entry.compare(0, nl, mine) == 0 && nl == mine.size())
      return std::stod(entry.substr(nl + 1));
  }
  return local_us;  // unreachable: this rank's own entry matches
}

void Timeline::start(double origin_us, uint64_t first_step, uint64_t max_steps) {
  active_ = max_steps > 0;
  written_ = false;
  origin_us_ = origin_us;
  first_step_ = first_step;
  max_steps_ = max_steps;
  events_.clear();
}

void Timeline::span(Row row, const std::string& name, double start_us, double end_us, uint64_t step,
                    const std::string& args_json) {
  if (!recording(step)) return;
  if (!events_.empty()) events_ += ",\n";
  events_ += fmt::format(
      R"({{"name":"{}","cat":"{}","ph":"X","pid":@RANK@,"tid":{},"ts":{:.3f},"dur":{:.3f},"args":{{"step":{}{}{}}}}})",
      name, row == kComm ? "comm" : "compute", static_cast<int>(row), start_us - origin_us_,
      end_us - start_us, step, args_json.empty() ? "" : ",", args_json);
}

void Timeline::write(ProcessGroup& pg, const std::string& path, std::chrono::milliseconds timeout) {
  written_ = true;
  std::vector<std::string> all = allgather_strings(pg, events_, timeout, "trace events");
  if (pg.rank() != 0) return;
  write_file_atomically("--trace", path, [&](std::ostream& out) {
    out << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
    bool first = true;
    for (size_t r = 0; r < all.size(); ++r) {
      if (!first) out << ",\n";
      first = false;
      out << fmt::format(
          R"({{"name":"process_name","ph":"M","pid":{0},"args":{{"name":"rank {0}"}}}},)"
          R"({{"name":"thread_name","ph":"M","pid":{0},"tid":0,"args":{{"name":"compute"}}}},)"
          R"({{"name":"thread_name","ph":"M","pid":{0},"tid":1,"args":{{"name":"comm"}}}})",
          r);
      std::string events = all[r];
      const std::string marker = "@RANK@";
      for (size_t pos = events.find(marker); pos != std::string::npos;
           pos = events.find(marker, pos)) {
        events.replace(pos, marker.size(), std::to_string(r));
      }
      if (!events.empty()) out << ",\n" << events;
    }
    out << "\n]}\n";
  });
}

}  // namespace dp
