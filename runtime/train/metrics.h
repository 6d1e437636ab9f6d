#pragma once
// The numbers one training step reports (DESIGN.md, "Numbers the runtime reports"), and
// the JSON-lines log they are written to.
#include <cstdint>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json_fwd.hpp>

namespace dp {

struct StepMetrics {
  uint64_t step = 0;   // 1-based optimizer step
  uint64_t epoch = 0;  // 0-based
  double loss = 0;     // mean over the global batch
  double lr = 0;
  // The averaged gradients' total L2 norm before any clipping (PyTorch's clip_grad_norm_
  // return value; llm.c's "norm"): the first sign of a divergence. Not finite on a bad step.
  double grad_norm = 0;
  double samples_per_s = 0;  // global batch / step time
  double tokens_per_s = 0;   // language models: samples/s x tokens per sample; else 0
  double step_ms = 0;
  double wall_s = 0;   // since training started, at the end of this step
  double data_ms = 0;  // waiting for the data loader
  double forward_ms = 0;
  double backward_ms = 0;
  double optimizer_ms = 0;
  double comm_ms = 0;          // all-reduce time of the gradient buckets
  double exposed_comm_ms = 0;  // the part of it after backward ended (not hidden)
  double other_wait_ms = 0;    // the rest of the wait after backward (queueing, wake-up)
  double overlap = 0;          // 1 - exposed / comm
  uint64_t samples = 0;        // global samples in the step (an epoch's last may be short)
  bool skipped = false;        // --on-nonfinite skip: no update; left out of loss means
};

// An epoch's (or a progress interval's) mean training loss over the steps that updated the
// model: a step skipped under --on-nonfinite skip has a loss that is often NaN (or one the
// update never used), and would turn the mean into NaN or skew it. NaN when every step so far
// was skipped.
struct EpochLoss {
  double sum = 0;        // of the counted steps' losses
  uint64_t steps = 0;    // steps of the epoch so far, skipped ones included
  uint64_t skipped = 0;  // of those, skipped
  void add(double loss, bool was_skipped);
  double mean() const;
};

// Writes one JSON object per line. Step records are formatted straight into a reused
// buffer (a JSON document per step would cost as much as the optimizer step of a small
// model) and written out at least once a second, by the writer or, while steps are slow or
// stalled, by a background thread: a run killed by MPI_Abort (--timeout on another rank) loses
// at most the last second. Other records (eval, summary) are written at once.
class JsonLog {
 public:
  JsonLog();
  // append: a resumed run continues the log of the run it resumes.
  explicit JsonLog(const std::string& path, bool append = false);
  ~JsonLog();
  JsonLog(JsonLog&&) noexcept;
  JsonLog& operator=(JsonLog&&) noexcept;
  bool is_open() const;
  void write_step(const StepMetrics& m);
  void write(const nlohmann::json& record);
  // Writes what is buffered; a failed write is a dp::Error (also one the background thread
  // met, reported here or at the next write).
  void flush();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace dp
