#pragma once
// `dprun predict`'s arithmetic: one rank's profile, a cluster model and a GPU count give a
// step time, exposed communication, scaling efficiency and the buckets automatic sizing
// would choose there (weak scaling: the per-GPU batch, and so the compute, stays the same).
#include <functional>
#include <vector>

#include "runtime/perf/allreduce_cost.h"
#include "runtime/perf/backward_profile.h"
#include "runtime/perf/bucket_choice.h"

namespace dp {

struct ScalingRow {
  int gpus = 1;
  int nodes = 1;
  AllReduceAlgo algo = AllReduceAlgo::ring;  // what the largest chosen bucket uses
  BucketChoice chosen;                       // automatic bucket sizing's buckets
  BucketChoice fixed;                        // the fixed caps' buckets (dprun's defaults)
  // compute / step: the share of a one-GPU step's throughput per GPU that is kept.
  double efficiency = 1;
};

struct ScalingOptions {
  AllReduceAlgo algo = AllReduceAlgo::best;
  double fixed_first_mb = 1;
  double fixed_cap_mb = 25;
  SimOptions sim;  // its busy_cost is replaced (below)
  // How many times longer an all-reduce of S bytes takes while backward computes (a CPU's
  // contention, measured: busy(S) / idle(S)); empty: as long (a GPU's NCCL).
  std::function<double(double bytes)> busy_factor;
  // Each node's link is token-bucket shaped with this burst (runtime/perf/overlap_sim.h);
  // 0: line rate.
  double link_burst_bytes = 0;
};

ScalingRow predict_at(const BackwardProfile& profile, const Cluster& cluster, int gpus,
                      const ScalingOptions& options = {});

// The profile with every time multiplied by `factor` (a faster or slower device; the
// gradient bytes stay).
BackwardProfile scale_compute(BackwardProfile profile, double factor);

// A measured all-reduce turned into a cluster of one-rank hosts joined by the ring link that
// reproduces it (AllReduceFit::as_ring_link), for extrapolating to other world sizes.
Cluster cluster_from_fit(const AllReduceFit& fit);

}  // namespace dp
