#pragma once
// What `dprun --profile-out FILE` writes (rank 0) and `dprun predict` reads: one run's
// compute profile, its measured all-reduce cost, the buckets it trained with, and what its
// steps measured afterwards (to validate predictions against).
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/perf/allreduce_cost.h"
#include "runtime/perf/backward_profile.h"

namespace dp {

// Medians over the steps after the profile (and after any rebuild it caused).
struct MeasuredSteps {
  uint64_t steps = 0;
  double step_us = 0;
  double backward_us = 0;
  double comm_us = 0;
  double exposed_us = 0;
  double other_wait_us = 0;
};

struct RunProfile {
  static constexpr int kVersion = 1;
  // The run.
  int world_size = 1;
  std::string backend;
  std::string model;
  size_t batch_size = 0;
  size_t grad_accum = 1;
  bool overlap = true;
  double wire_ratio = 1.0;  // bytes on the wire per gradient byte (comm hooks)
  // The token bucket of each host's link (DPRUN_LINK_BURST, which dprun-netns sets to its
  // tbf burst); 0: line rate. dprun predict models it (runtime/perf/overlap_sim.h).
  double link_burst_bytes = 0;
  int hosts = 0;            // distinct host names among the ranks; 0: not recorded
  uint64_t first_step = 0;  // the profiled steps, 1-based, inclusive
  uint64_t last_step = 0;
  // Rank 0's compute and the group's all-reduce. Its ready times are the slowest rank's
  // (runtime/perf/step_samples.h): what this run's buckets waited for.
  BackwardProfile compute;
  // Rank 0's own ready times, per parameter, from its own backward: the compute without this
  // run's skew between ranks. Empty in profiles written before they were recorded.
  std::vector<double> own_ready_us;
  AllReduceFit allreduce_idle;  // measured alone, between steps (the probe)
  AllReduceFit allreduce_busy;  // while backward computes (SimOptions::busy_cost)
  // The buckets of the measured steps.
  double first_bucket_mb = 0;
  double bucket_cap_mb = 0;
  bool auto_buckets = false;
  std::vector<std::vector<size_t>> assignment;
  double predicted_step_us = 0;  // for that assignment, with `allreduce`
  double predicted_exposed_us = 0;
  MeasuredSteps measured;  // steps == 0: none after the profile
};

// The compute that extrapolates to other GPU counts (dprun predict's table): `compute` with
// every gradient ready when rank 0's own backward wrote it. How late the run's slowest peer was
// belongs to that run and its machine, not to the model's compute: carried over, it showed as
// exposed communication even on one GPU. Profiles without own times: the slowest rank's,
// clamped to backward's end (a gradient the rank itself wrote after it is a peer's lateness).
BackwardProfile own_compute(const RunProfile& p);

// DPRUN_LINK_BURST from the environment: bytes, 0 when unset; a dp::Error naming the variable
// when it is not a whole number of bytes.
double link_burst_from_env();

nlohmann::json to_json(const RunProfile& p);
// `where` names the file in errors.
RunProfile run_profile_from_json(const nlohmann::json& j, const std::string& where);
void write_run_profile(const std::string& path, const RunProfile& p);
RunProfile read_run_profile(const std::string& path);

}  // namespace dp
