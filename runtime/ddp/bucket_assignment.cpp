#include "runtime/ddp/bucket_assignment.h"

#include <cmath>

#include "runtime/core/error.h"

namespace dp {

std::vector<std::vector<size_t>> assign_buckets(const std::vector<size_t>& order,
                                                const std::vector<size_t>& param_bytes,
                                                size_t first_cap_bytes, size_t cap_bytes) {
  DP_CHECK(first_cap_bytes > 0 && cap_bytes > 0,
           "bucket caps must be positive (got {} and {} bytes)", first_cap_bytes, cap_bytes);
  std::vector<std::vector<size_t>> buckets;
  std::vector<bool> seen(param_bytes.size(), false);
  std::vector<size_t> current;
  size_t current_bytes = 0;
  for (size_t p : order) {
    DP_CHECK(p < param_bytes.size(), "bucket order names parameter {} of {}", p,
             param_bytes.size());
    DP_CHECK(!seen[p], "bucket order names parameter {} twice", p);
    seen[p] = true;
    size_t cap = buckets.empty() ? first_cap_bytes : cap_bytes;
    if (!current.empty() && current_bytes + param_bytes[p] > cap) {
      buckets.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(p);
    current_bytes += param_bytes[p];
  }
  if (!current.empty()) buckets.push_back(std::move(current));
  for (size_t p = 0; p < seen.size(); ++p) {
    DP_CHECK(seen[p], "bucket order misses parameter {}", p);
  }
  return buckets;
}

size_t mb_to_bytes(double mb) {
  DP_CHECK(std::isfinite(mb) && mb > 0, "a bucket size must be a positive number of MB, got {}",
           mb);
  double bytes = std::round(mb * 1024.0 * 1024.0);
  DP_CHECK(bytes >= 4, "a bucket size of {} MB is smaller than one float", mb);
  return static_cast<size_t>(bytes);
}

}  // namespace dp
