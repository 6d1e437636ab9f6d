#pragma once
// The timings of a few training steps, reduced to one BackwardProfile: the median of every
// figure over the steps (one slow step, a page fault or a descheduled thread, moves no
// median), each parameter's ready time the median of its own.
#include <string>
#include <vector>

#include "runtime/perf/allreduce_calibration.h"
#include "runtime/perf/backward_profile.h"

namespace dp {

struct StepSample {
  double pre_backward_us = 0;   // step start to the synchronising backward's start
  double backward_us = 0;       // that backward
  double wait_us = 0;           // finish(): waiting for the buckets after backward
  double post_backward_us = 0;  // finish() returned to the step's end
  double data_us = 0;
  double forward_us = 0;
  double optimizer_us = 0;
  std::vector<double> ready_us;     // per parameter, relative to the backward's start
  std::vector<BucketTiming> spans;  // each bucket's all-reduce, relative to backward's start
};

// `names` and `bytes` per parameter, in the order of every sample's ready_us.
BackwardProfile median_profile(const std::vector<StepSample>& samples,
                               const std::vector<std::string>& names,
                               const std::vector<size_t>& bytes);

double median(std::vector<double> values);

}  // namespace dp
