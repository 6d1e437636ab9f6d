#include "runtime/perf/scaling.h"

#include <algorithm>

#include "runtime/core/error.h"

namespace dp {

ScalingRow predict_at(const BackwardProfile& profile, const Cluster& cluster, int gpus,
                      const ScalingOptions& options) {
  const AllReduceCostModel model(cluster, gpus);
  const AllReduceAlgo algo = options.algo;
  const AllReduceCost cost = [model, algo](double bytes) { return model.time_us(bytes, algo); };
  ScalingRow row;
  row.gpus = gpus;
  row.nodes = model.nodes();
  BucketSearch search;
  search.sim = options.sim;
  search.sim.busy_cost = nullptr;
  set_link_burst(search.sim, options.link_burst_bytes, model.nodes(), cost);
  if (options.busy_factor) {
    const auto factor = options.busy_factor;
    search.sim.busy_cost = [cost, factor](double bytes) { return cost(bytes) * factor(bytes); };
  }
  row.chosen = choose_buckets(profile, cost, search);
  row.fixed =
      evaluate_buckets(profile, cost, options.fixed_first_mb, options.fixed_cap_mb, search.sim);
  size_t largest = 0;
  for (const SimBucket& b : row.chosen.prediction.buckets) largest = std::max(largest, b.bytes);
  model.time_us(double(largest) * options.sim.wire_ratio, algo, &row.algo);
  row.efficiency = profile.compute_us() / row.chosen.prediction.step_us;
  return row;
}

BackwardProfile scale_compute(BackwardProfile p, double factor) {
  DP_CHECK(factor > 0, "compute scale must be positive (got {})", factor);
  p.pre_backward_us *= factor;
  p.backward_us *= factor;
  p.post_backward_us *= factor;
  p.data_us *= factor;
  p.forward_us *= factor;
  p.optimizer_us *= factor;
  for (ParamTiming& t : p.params) t.ready_us *= factor;
  return p;
}

Cluster cluster_from_fit(const AllReduceFit& fit) {
  DP_CHECK(fit.world >= 2, "a measured all-reduce over {} rank(s) says nothing about a link",
           fit.world);
  Cluster c;
  c.name = "measured";
  c.gpus_per_node = 1;
  c.inter = fit.as_ring_link();
  c.intra = c.inter;
  c.nics_per_node = 1;
  return c;
}

}  // namespace dp
