#include "runtime/perf/overlap_sim.h"

#include <algorithm>

#include "runtime/core/error.h"
#include "runtime/core/units.h"

namespace dp {

namespace {

// One step with `idle_before_us` of idle link before backward starts (the token bucket's
// refill since the previous step's last all-reduce).
StepPrediction simulate(const BackwardProfile& profile,
                        const std::vector<std::vector<size_t>>& assignment,
                        const AllReduceCost& cost, const SimOptions& options,
                        double idle_before_us) {
  const double backward = profile.backward_us;
  const bool bursty = options.burst_bytes > 0 && options.refill_bytes_per_us > 0;
  double credit = 0, link_free_at = -idle_before_us;
  StepPrediction p;
  p.buckets.reserve(assignment.size());
  double last_launch = 0, last_end = 0;
  for (const auto& members : assignment) {
    DP_CHECK(!members.empty(), "simulate_step: an empty bucket");
    SimBucket b;
    double ready = 0;
    for (size_t i : members) {
      DP_CHECK(i < profile.params.size(), "simulate_step: parameter {} of {}", i,
               profile.params.size());
      b.bytes += profile.params[i].bytes;
      ready = std::max(ready, profile.params[i].ready_us);
    }
    // Later than backward's end: a slower peer (runtime/perf/step_samples.h).
    b.ready_us = options.overlap ? ready : std::max(ready, backward);
    last_launch = std::max(last_launch, b.ready_us);
    b.start_us = std::max(last_launch, last_end);
    double wire = double(b.bytes) * options.wire_ratio;
    if (bursty) {
      credit = std::min(options.burst_bytes,
                        credit + (b.start_us - link_free_at) * options.refill_bytes_per_us);
      const double free_bytes = std::min(credit, wire);
      credit -= free_bytes;
      wire -= free_bytes;
    }
    const double alone = cost(wire);
    if (options.busy_cost && b.start_us < backward) {
      const double busy = options.busy_cost(wire);
      b.end_us = b.start_us + busy <= backward
                     ? b.start_us + busy
                     : backward + (1 - (backward - b.start_us) / busy) * alone;
    } else {
      b.end_us = b.start_us + alone;
    }
    last_end = link_free_at = b.end_us;
    p.comm_us += b.end_us - b.start_us;
    p.buckets.push_back(b);
  }
  // After backward this rank's communication thread is never idle (every bucket was launched,
  // and one waiting for a slower peer counts as running, as in the runtime's figure).
  p.exposed_us = std::max(0.0, last_end - backward);
  p.step_us = profile.pre_backward_us + backward + p.exposed_us + profile.post_backward_us;
  return p;
}

}  // namespace

void set_link_burst(SimOptions& sim, double link_burst_bytes, int hosts,
                    const AllReduceCost& cost) {
  sim.burst_bytes = sim.refill_bytes_per_us = 0;
  if (link_burst_bytes <= 0 || hosts < 2) return;
  const double per_link = 2.0 * (hosts - 1) / hosts;
  const double big = 32.0 * kBytesPerMb, marginal_us = cost(2 * big) - cost(big);
  if (marginal_us <= 0) return;
  sim.burst_bytes = link_burst_bytes / per_link;
  sim.refill_bytes_per_us = big / marginal_us;
}

StepPrediction simulate_step(const BackwardProfile& profile,
                             const std::vector<std::vector<size_t>>& assignment,
                             const AllReduceCost& cost, const SimOptions& options) {
  const double between = profile.pre_backward_us + profile.post_backward_us;
  StepPrediction p = simulate(profile, assignment, cost, options, between);
  // All hidden: the previous step's link went idle before its backward ended, and had that
  // much longer to refill.
  if (options.burst_bytes > 0 && !p.buckets.empty() && p.exposed_us == 0)
    p = simulate(profile, assignment, cost, options,
                 between + profile.backward_us - p.buckets.back().end_us);
  return p;
}

}  // namespace dp
