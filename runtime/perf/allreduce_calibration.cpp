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
    const double left = t_out / idle.time_us(s.bytes);  // the share done after backward
    if (left < 0.9) by_size[s.bytes].push_back(t_in / (1 - left));
  }
  if (by_size.empty()) return idle;
  std::vector<AllReduceFit::Sample> medians;
  for (auto& [bytes, us] : by_size) {
    std::nth_element(us.begin(), us.begin() + us.size() / 2, us.end());
    medians.push_back({bytes, us[us.size() / 2]});
  }
  const double smallest = medians.front().bytes, largest = medians.back().bytes;
  if (medians.size() >= 2 && largest >= 4 * std::max(smallest, 1.0))
    return AllReduceFit::least_squares(idle.world, medians);
  double measured = 0, predicted = 0;
  for (const AllReduceFit::Sample& s : medians) {
    measured += s.us;
    predicted += idle.time_us(s.bytes);
  }
  AllReduceFit scaled = idle;
  const double k = predicted > 0 ? std::max(1.0, measured / predicted) : 1;
  scaled.alpha_us *= k;
  scaled.us_per_byte *= k;
  scaled.samples = medians;
  return scaled;
}

}  // namespace dp
