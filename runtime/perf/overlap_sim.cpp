#include "runtime/perf/overlap_sim.h"

#include <algorithm>

#include "runtime/core/error.h"

namespace dp {

StepPrediction simulate_step(const BackwardProfile& profile,
                             const std::vector<std::vector<size_t>>& assignment,
                             const AllReduceCost& cost, const SimOptions& options) {
  const double backward = profile.backward_us;
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
    const double wire = double(b.bytes) * options.wire_ratio;
    const double alone = cost(wire);
    if (options.busy_cost && b.start_us < backward) {
      const double busy = options.busy_cost(wire);
      b.end_us = b.start_us + busy <= backward
                     ? b.start_us + busy
                     : backward + (1 - (backward - b.start_us) / busy) * alone;
    } else {
      b.end_us = b.start_us + alone;
    }
    last_end = b.end_us;
    p.comm_us += b.end_us - b.start_us;
    p.buckets.push_back(b);
  }
  // After backward this rank's communication thread is never idle (every bucket was launched,
  // and one waiting for a slower peer counts as running, as in the runtime's figure).
  p.exposed_us = std::max(0.0, last_end - backward);
  p.step_us = profile.pre_backward_us + backward + p.exposed_us + profile.post_backward_us;
  return p;
}

}  // namespace dp
