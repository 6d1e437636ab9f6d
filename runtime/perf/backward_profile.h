#pragma once
// What one rank's training step looks like to the overlap simulator: when each parameter's
// gradient is written during backward, how large it is, and the compute around backward.
// Measured by the Trainer over a few steps (runtime/perf/profile_recorder.h) or made up by
// tests; no communication figure is in it (the all-reduce cost is a separate model).
#include <cstddef>
#include <string>
#include <vector>

namespace dp {

struct ParamTiming {
  std::string name;
  size_t bytes = 0;  // float32 gradient bytes
  // Gradient written, relative to the start of the (synchronising) backward. In a measured
  // profile, when the slowest rank had written it (runtime/perf/step_samples.h), which can be
  // after this rank's backward ended.
  double ready_us = 0;
};

struct BackwardProfile {
  // In the Reducer's parameter order (registration order): index = parameter index.
  std::vector<ParamTiming> params;
  // The step is pre_backward + backward + (wait for the buckets) + post_backward:
  double pre_backward_us = 0;   // step start to the start of the synchronising backward: data,
                                // forward, earlier micro-batches of gradient accumulation
  double backward_us = 0;       // the synchronising backward, during which buckets launch
  double post_backward_us = 0;  // after the last bucket: step-loss all-reduce, optimizer
  // Parts of the above, for reports only.
  double data_us = 0;
  double forward_us = 0;
  double optimizer_us = 0;

  size_t grad_bytes() const;
  // Compute time of a step without any communication.
  double compute_us() const { return pre_backward_us + backward_us + post_backward_us; }
  // Parameter indices by ready time (ties: the higher index first, as reverse registration).
  std::vector<size_t> ready_order() const;
  // Checks that it can be simulated (times finite and not negative, at least one parameter);
  // throws dp::Error naming what is wrong.
  void validate() const;
};

}  // namespace dp
