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

  // Times are recorded relative to `origin_us`. Records the `max_steps` steps after
  // `first_step` (this process's first steps: a resumed run starts after its checkpoint's).
  void start(double origin_us, uint64_t first_step, uint64_t max_steps);
  bool recording(uint64_t step) const {
    return active_ && step > first_step_ && step - first_step_ <= max_steps_;
  }
  // True once `step`, the last one recorded, has finished: the trace can be written then,
  // long before the run ends (or fails).
  bool complete_after(uint64_t step) const {
    return active_ && !written_ && step - first_step_ == max_steps_;
  }
  bool written() const { return written_; }

  // Collective: the origin every rank's row is drawn from, given `local_us`, a now_us() each
  // rank took right after one barrier. Ranks that share a kernel (one boot, one monotonic
  // clock: ranks of one host, its containers) take the lowest such rank's, so that a rank the
  // scheduler ran late after the barrier (more ranks than cores) does not shift its whole row
  // by milliseconds; other hosts' rows line up through the barrier alone.
  static double shared_origin(ProcessGroup& pg, double local_us, std::chrono::milliseconds timeout);
  void span(Row row, const std::string& name, double start_us, double end_us, uint64_t step,
            const std::string& args_json = "");
  // A now_us() time on the trace's clock (its "ts"), for times carried in a span's args.
  double trace_us(double t_us) const { return t_us - origin_us_; }

  // Collective: gathers every rank's events; rank 0 writes the file. Once: later spans are
  // not recorded.
  void write(ProcessGroup& pg, const std::string& path, std::chrono::milliseconds timeout);

 private:
  bool active_ = false;
  bool written_ = false;
  double origin_us_ = 0;
  uint64_t first_step_ = 0;
  uint64_t max_steps_ = 0;
  std::string events_;  // comma-separated JSON objects
};

}  // namespace dp
