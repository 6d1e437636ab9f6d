#include "runtime/perf/allreduce_calibration.h"

#include <algorithm>
#include <map>

namespace dp {

AllReduceFit calibrate_busy(const std::vector<BucketTiming>& spans, const AllReduceFit& idle) {
  if (idle.world <= 1) return idle;
  std::map<double, std::vector<double>> by_size;
  for (const BucketTiming& s : spans) {
    const double t_in = std::min(s.end_us, s.backward_us) - s.start_us;
    const double t_out = s.end_us - std::max(s.start_us, s.backward_us);
    if (t_in <= 0) continue;  // ran after backward
    if (t_out <= 0) {
      by_size[s.bytes].push_back(t_in);
      continue;
    }
    // Mostly after backward: a few us inside (or a late ready time) would make the estimate
    // noise. Otherwise the share of its work done after backward at the idle rate.
    if (t_in < 0.25 * (t_in + t_out)) continue;
    const double left = t_out / idle.time_us(s.bytes);
    if (left < 0.9) by_size[s.bytes].push_back(t_in / (1 - left));
  }
  if (by_size.empty()) return idle;
  std::vector<AllReduceFit::Sample> medians;
  for (auto& [bytes, us] : by_size) {
    std::nth_element(us.begin(), us.begin() + us.size() / 2, us.end());
    medians.push_back({bytes, us[us.size() / 2]});
  }
  const double smallest = medians.front().bytes, largest = medians.back().bytes;
  if (medians.size() >= 2 && largest >= 4 * std::max(smallest, 1.0)) {
    AllReduceFit f = AllReduceFit::least_squares(idle.world, medians);
    if (f.us_per_byte < idle.us_per_byte) {
      // The link is no faster while backward computes: keep its bandwidth and put the rest of
      // what was measured into the latency.
      f.us_per_byte = idle.us_per_byte;
      double excess = 0;
      for (const AllReduceFit::Sample& s : medians) excess += s.us - s.bytes * f.us_per_byte;
      f.alpha_us = std::max(idle.alpha_us, excess / double(medians.size()));
    }
    return f;
  }
  // One size (or sizes too close to fit a slope): the time can't be split into latency and
  // bandwidth. Scaling the idle line by measured / predicted extrapolates a small bucket's
  // slowdown to every byte: the first bucket (a few KB by design) waiting a scheduler slice
  // for the CPU made 4.4 ms/MB look like 205 ms/MB on 2 emulated hosts, and the choice fell to
  // one bucket, slower than any fixed cap. As above, the link is no faster while backward
  // computes: keep its bandwidth and put what is left into the latency.
  AllReduceFit f = idle;
  double excess = 0;
  for (const AllReduceFit::Sample& s : medians) excess += s.us - s.bytes * idle.us_per_byte;
  f.alpha_us = std::max(idle.alpha_us, excess / double(medians.size()));
  f.samples = medians;
  return f;
}

}  // namespace dp
