#include "runtime/perf/step_samples.h"

#include <algorithm>

#include "runtime/core/error.h"

namespace dp {

double median(std::vector<double> v) {
  DP_CHECK(!v.empty(), "median of nothing");
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

BackwardProfile median_profile(const std::vector<StepSample>& samples,
                               const std::vector<std::string>& names,
                               const std::vector<size_t>& bytes) {
  DP_CHECK(!samples.empty(), "profile: no steps were sampled");
  DP_CHECK(names.size() == bytes.size(), "profile: {} names for {} sizes", names.size(),
           bytes.size());
  auto med = [&samples](double StepSample::*field) {
    std::vector<double> v;
    for (const StepSample& s : samples) v.push_back(s.*field);
    return median(std::move(v));
  };
  BackwardProfile p;
  p.pre_backward_us = med(&StepSample::pre_backward_us);
  p.backward_us = med(&StepSample::backward_us);
  p.post_backward_us = med(&StepSample::post_backward_us);
  p.data_us = med(&StepSample::data_us);
  p.forward_us = med(&StepSample::forward_us);
  p.optimizer_us = med(&StepSample::optimizer_us);
  for (size_t i = 0; i < names.size(); ++i) {
    std::vector<double> ready;
    for (const StepSample& s : samples) {
      DP_CHECK(s.ready_us.size() == names.size(),
               "profile: a step with {} ready times for {} "
               "parameters",
               s.ready_us.size(), names.size());
      ready.push_back(s.ready_us[i]);
    }
    p.params.push_back({names[i], bytes[i], std::max(0.0, median(std::move(ready)))});
  }
  return p;
}

}  // namespace dp
