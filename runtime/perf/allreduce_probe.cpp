#include "runtime/perf/allreduce_probe.h"

#include <algorithm>

#include <fmt/format.h>

#include "runtime/core/error.h"

namespace dp {

std::vector<size_t> default_probe_sizes(size_t max_bytes) {
  std::vector<size_t> sizes;
  for (size_t s : {size_t{64} << 10, size_t{1} << 20, std::min(size_t{8} << 20, max_bytes)}) {
    s = std::max<size_t>(s / 4 * 4, 4);  // whole floats
    if (std::find(sizes.begin(), sizes.end(), s) == sizes.end()) sizes.push_back(s);
  }
  std::sort(sizes.begin(), sizes.end());
  return sizes;
}

AllReduceFit measure_allreduce(ProcessGroup& pg, const ProbeOptions& options) {
  DP_CHECK(options.sizes_bytes.size() >= 2 && options.repeats >= 1,
           "all-reduce probe: {} size(s), {} repeat(s)", options.sizes_bytes.size(),
           options.repeats);
  const size_t largest = *std::max_element(options.sizes_bytes.begin(), options.sizes_bytes.end());
  // Once per process: allocate() is collective and its buffer lives as long as the group.
  Tensor buffer = pg.allocate((largest + 3) / 4, DType::f32);
  std::vector<AllReduceFit::Sample> samples;
  for (size_t bytes : options.sizes_bytes) {
    Tensor t = buffer.view(0, {static_cast<int64_t>(std::max<size_t>(bytes / 4, 1))});
    std::vector<double> us;
    for (int r = 0; r <= options.repeats; ++r) {
      WorkPtr w = pg.allreduce(t, ReduceOp::avg, fmt::format("allreduce probe {} B", bytes));
      w->wait(options.timeout);
      if (r > 0) us.push_back(w->duration_us());  // the first one warms the path up
    }
    std::nth_element(us.begin(), us.begin() + us.size() / 2, us.end());
    samples.push_back({double(t.nbytes()), std::max(us[us.size() / 2], 1e-3)});
  }
  return AllReduceFit::least_squares(pg.size(), samples);
}

}  // namespace dp
