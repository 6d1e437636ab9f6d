#pragma once
// Automatic bucket sizing (--bucket-cap-mb auto, --first-bucket-mb auto) and the profile
// that `dprun predict` reads (--profile-out). The Trainer hands it a few steps' timings; at
// the end of that window every rank measures the all-reduce on the process group, rank 0
// simulates the overlapped schedule for a grid of caps (runtime/perf/bucket_choice.h),
// picks the fastest and broadcasts the assignment, and every Reducer rebuilds once with it
// (as after the first step). The buckets of the profiled steps are the fixed caps.
//
//   step 1                      warm-up, the Reducer's rebuild in the observed order
//   steps 2 .. 1 + K            profiled (K = profile_steps), then the collective decision
//   steps 3 + K ..              measured for --profile-out (step 2 + K runs the rebuild)
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/perf/allreduce_probe.h"
#include "runtime/perf/bucket_choice.h"
#include "runtime/perf/run_profile.h"
#include "runtime/perf/step_samples.h"
#include "runtime/train/metrics.h"

namespace dp {

class ProcessGroup;
class Reducer;

struct BucketTuningOptions {
  bool auto_first = false;  // choose the first bucket's cap
  bool auto_cap = false;    // choose the other buckets' cap
  double first_mb = 1;      // the fixed caps: of the profiled steps, and those not chosen
  double cap_mb = 25;
  std::string profile_out;  // rank 0 writes the profile here at the end of the run
  uint64_t start_step = 0;  // steps done before this run (a resumed run)
  uint64_t profile_steps = 5;
  bool overlap = true;
  double wire_ratio = 1;
  bool quiet = false;
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // How the all-reduce alone is measured (collective); empty: measure_allreduce on the group.
  // Tests give a fixed link, so that the choice does not depend on the machine's speed.
  std::function<AllReduceFit(ProcessGroup&, const ProbeOptions&)> measure;
  // Recorded in the profile.
  double link_burst_bytes = 0;  // link_burst_from_env()
  std::string model;
  size_t batch_size = 0;
  size_t grad_accum = 1;
};

class BucketTuner {
 public:
  // --profile-out's measured medians are over at most the last this many steps: rank 0 kept
  // every step's metrics and grew by ~260 bytes a step for the whole run.
  static constexpr size_t kMeasuredSteps = 10000;

  // `log` (may be null): where the decision is recorded as a JSON line.
  BucketTuner(BucketTuningOptions options, Reducer& reducer, ProcessGroup& pg, JsonLog* log);

  bool auto_buckets() const { return opt_.auto_first || opt_.auto_cap; }
  // Auto buckets were asked for and not chosen yet: a checkpoint now holds the fixed caps'
  // buckets, and the run that resumes it must still choose.
  bool choice_pending() const { return auto_buckets() && !decided_; }
  // Whether step `step` (1-based) is one of the profiled ones.
  bool profiling(uint64_t step) const { return step >= first_ && step <= last_; }
  uint64_t first_profiled_step() const { return first_; }
  uint64_t last_profiled_step() const { return last_; }
  void add_sample(StepSample sample) { samples_.push_back(std::move(sample)); }
  // How many hosts the ranks run on (distinct host names), once known: with
  // opt.link_burst_bytes the simulation gives each host's link its token bucket.
  void set_hosts(int hosts) { hosts_ = hosts; }
  // Every rank, after step `step` ended (collective after the last profiled step).
  void after_step(uint64_t step, const StepMetrics& m);
  // Every rank, at the end of the run (collective when the run ended inside the window).
  void finish();

 private:
  // Collective: the all-reduce probe, and with auto buckets the choice (rank 0's, taken by
  // every rank) unless `choose` is false (the run is over).
  void decide(bool choose);
  BackwardProfile profile() const;
  void write_profile() const;

  BucketTuningOptions opt_;
  int hosts_ = 0;  // 0: unknown
  Reducer& reducer_;
  ProcessGroup& pg_;
  JsonLog* log_;
  uint64_t first_;  // the profiled steps, 1-based, inclusive
  uint64_t last_;
  bool decided_ = false;
  std::vector<StepSample> samples_;
  // This rank's ready times, before slowest_rank_view: the profile's own_ready_us.
  std::vector<double> own_ready_us_;
  AllReduceFit probe_;                 // the all-reduce alone
  AllReduceFit busy_;                  // while backward computes (from the profiled steps)
  BucketChoice in_use_;                // the buckets after the decision, with their prediction
  std::vector<StepMetrics> measured_;  // a ring of the last kMeasuredSteps measured steps
  uint64_t measured_count_ = 0;        // steps measured in all
};

}  // namespace dp
