#pragma once
// A per-rank record of what happened when, exported as a Chrome trace (chrome://tracing,
// Perfetto): one process per rank, a "compute" row (data, forward, backward, optimizer,
// waiting for communication) and a "comm" row with one span per bucket all-reduce. This is
// where overlap is SEEN: bucket spans sitting under the backward span.
#include <string>
#include <vector>

#include "runtime/comm/process_group.h"

namespace dp {

class Timeline {
 public:
  enum Row { kCompute = 0, kComm = 1 };

  // Times are recorded relative to `origin_us` (taken right after a barrier on every rank,
  // so that rows of different ranks line up even across nodes). Records the `max_steps` steps
  // after `first_step` (this process's first steps: a resumed run starts after its checkpoint's).
  void start(double origin_us, uint64_t first_step, uint64_t max_steps);
  bool recording(uint64_t step) const {
    return active_ && step > first_step_ && step - first_step_ <= max_steps_;
  }
  void span(Row row, const std::string& name, double start_us, double end_us, uint64_t step,
            const std::string& args_json = "");
  // A now_us() time on the trace's clock (its "ts"), for times carried in a span's args.
  double trace_us(double t_us) const { return t_us - origin_us_; }

  // Collective: gathers every rank's events; rank 0 writes the file.
  void write(ProcessGroup& pg, const std::string& path, std::chrono::milliseconds timeout) const;

 private:
  bool active_ = false;
  double origin_us_ = 0;
  uint64_t first_step_ = 0;
  uint64_t max_steps_ = 0;
  std::string events_;  // comma-separated JSON objects
};

}  // namespace dp
