#pragma once
// Automatic bucket sizing: tries every (first bucket cap, bucket cap) pair of a grid on the
// overlap simulator and keeps the one with the shortest predicted step. Large buckets pay
// the all-reduce latency fewer times; small ones start earlier and leave less to do after
// backward; the simulator weighs the two for this model, this link and this world size.
#include <vector>

#include "runtime/perf/backward_profile.h"
#include "runtime/perf/overlap_sim.h"

namespace dp {

struct BucketSearch {
  std::vector<double> first_mb = default_grid();  // candidate caps of bucket 0, MiB
  std::vector<double> cap_mb = default_grid();    // candidate caps of the others, MiB
  // Predictions within this fraction of the best step are a tie, which the fewest buckets win
  // (then the larger caps): each launch costs a little that the model does not see, and a
  // difference this small is below the noise of a measured step.
  double tie_fraction = 0.005;
  SimOptions sim;
  // The order parameters join buckets in; empty: the profile's ready order. Over a parameter
  // arena the BucketTuner passes the reverse registration order, whose buckets are ranges of
  // the arena's gradient block (ReducerOptions::arena); the simulation still uses the
  // measured ready times.
  std::vector<size_t> order;
  // 0.25 MiB to 64 MiB in steps of sqrt(2).
  static std::vector<double> default_grid();
};

struct BucketChoice {
  double first_mb = 0;
  double cap_mb = 0;
  std::vector<std::vector<size_t>> assignment;  // parameter indices per bucket
  StepPrediction prediction;
};

// Buckets are filled in the profile's ready order (BackwardProfile::ready_order), as the
// Reducer's rebuild fills them in the observed order.
BucketChoice choose_buckets(const BackwardProfile& profile, const AllReduceCost& cost,
                            const BucketSearch& search = {});

// The buckets given caps would make for this profile (no search), with their prediction.
BucketChoice evaluate_buckets(const BackwardProfile& profile, const AllReduceCost& cost,
                              double first_mb, double cap_mb, const SimOptions& sim = {});

}  // namespace dp
