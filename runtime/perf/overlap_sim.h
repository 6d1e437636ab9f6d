#pragma once
// Simulates one step of the Reducer's schedule for a bucket assignment: a bucket becomes
// ready when its last gradient is written, buckets launch strictly in order (a bucket waits
// for every earlier one to be launched), and their all-reduces run one at a time (one
// communication thread, or one NCCL stream). Predicts the step time and the communication
// backward does not hide:
//   ready_b  = max over the bucket's parameters of ready_us        (backward end without overlap)
//   start_b  = max(ready_b, end_{b-1}),  end_b = start_b + cost(wire bytes of b)
//              (in-order launch adds nothing: bucket b-1 was launched before it ended)
//   exposed  = time some all-reduce runs after backward ends = max(0, end_last - backward)
//   step     = pre_backward + backward + exposed + post_backward
// The same definitions as the runtime's figures (runtime/ddp/bucket.h, CommStats).
//
// On a CPU the communication thread competes with backward for the cores: an all-reduce
// during backward can take many times what it takes alone. With a `busy_cost` (its time while
// backward computes) a bucket that starts during backward progresses at 1 / busy_cost until
// backward ends and at 1 / cost after:
//   start_b + busy_b <= backward:  end_b = start_b + busy_b
//   otherwise:                     end_b = backward + (1 - (backward - start_b) / busy_b) cost_b
// Without one (a GPU's NCCL stream) the two are the same.
//
// A token-bucket-shaped link (tbf under dprun-netns, a cloud VM's burst credits) sends the
// first bytes after an idle gap at once: while no all-reduce runs, credit for `burst_bytes`
// builds up at `refill_bytes_per_us`, and an all-reduce costs what its bytes beyond the credit
// cost. In the steady state the link idles from the previous step's last all-reduce (after
// backward when some is exposed) through the optimizer, the next forward and backward until
// the first bucket starts. Without a burst (a NIC at line rate) nothing changes.
#include <algorithm>
#include <functional>
#include <vector>

#include "runtime/perf/backward_profile.h"

namespace dp {

// Microseconds one all-reduce of `bytes` bytes takes.
using AllReduceCost = std::function<double(double bytes)>;

struct SimBucket {
  size_t bytes = 0;  // float32 gradient bytes
  double ready_us = 0;
  double start_us = 0;
  double end_us = 0;
};

struct StepPrediction {
  double step_us = 0;
  double comm_us = 0;     // sum of the all-reduces (they never overlap each other), without
                          // waiting for slower peers
  double exposed_us = 0;  // from backward's end to the last all-reduce's end
  std::vector<SimBucket> buckets;
  // The fraction of communication backward hides (the runtime's overlap figure).
  double hidden() const { return comm_us > 0 ? std::max(0.0, 1.0 - exposed_us / comm_us) : 1.0; }
};

struct SimOptions {
  bool overlap = true;      // false: every bucket launches when backward ends (--no-overlap)
  double wire_ratio = 1.0;  // bytes on the wire per gradient byte (0.5 under bf16/fp16 hooks)
  AllReduceCost busy_cost;  // an all-reduce's time while backward computes; empty: `cost`
  double burst_bytes = 0;   // the link's token bucket, in all-reduce wire bytes; 0: none
  double refill_bytes_per_us = 0;  // its refill rate (the link's sustained rate)
};

// Sets `sim`'s token bucket for hosts whose links each hold `link_burst_bytes` (tbf's burst,
// as dprun-netns prints it): in a ring over `hosts` hosts each link carries 2(h-1)/h of the
// all-reduced bytes, and the bucket refills at the sustained rate `cost` implies for large
// all-reduces. Fewer than 2 hosts, or no burst: none.
void set_link_burst(SimOptions& sim, double link_burst_bytes, int hosts, const AllReduceCost& cost);

StepPrediction simulate_step(const BackwardProfile& profile,
                             const std::vector<std::vector<size_t>>& assignment,
                             const AllReduceCost& cost, const SimOptions& options = {});

}  // namespace dp
