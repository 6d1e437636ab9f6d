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
    v.reserve(samples.size());
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

std::vector<StepSample> slowest_rank_view(std::vector<StepSample> own,
                                          const std::vector<float>& gathered, int world,
                                          const std::vector<std::vector<size_t>>& assignment) {
  const size_t steps = own.size();
  const size_t params = steps ? own.front().ready_us.size() : 0;
  DP_CHECK(world >= 1 && gathered.size() == size_t(world) * steps * params,
           "profile: {} gathered times for {} rank(s) x {} step(s) x {} parameter(s)",
           gathered.size(), world, steps, params);
  for (size_t s = 0; s < steps; ++s) {
    StepSample& x = own[s];
    DP_CHECK(x.ready_us.size() == params, "profile: a step with {} ready times for {} parameters",
             x.ready_us.size(), params);
    for (size_t p = 0; p < params; ++p) {
      double latest = x.ready_us[p];
      for (int r = 0; r < world; ++r)
        latest = std::max(
            latest, double(gathered[(size_t(r) * steps + s) * params + p]) - x.pre_backward_us);
      x.ready_us[p] = latest;
    }
    for (size_t b = 0; b < x.spans.size() && b < assignment.size(); ++b) {
      double ready = 0;
      for (size_t p : assignment[b]) ready = std::max(ready, x.ready_us.at(p));
      BucketTiming& t = x.spans[b];
      t.start_us = std::min(t.end_us, std::max(t.start_us, ready));
    }
  }
  return own;
}

}  // namespace dp
