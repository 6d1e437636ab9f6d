#include "runtime/ddp/bucket_assignment.h"

#include <algorithm>
#include <cmath>

#include "runtime/core/error.h"
#include "runtime/core/units.h"

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

void check_assignment(const std::vector<std::vector<size_t>>& assignment, size_t num_params) {
  std::vector<int> seen(num_params, 0);
  for (const auto& bucket : assignment) {
    DP_CHECK(!bucket.empty(), "bucket assignment: an empty bucket");
    for (size_t i : bucket)
      DP_CHECK(i < seen.size() && seen[i]++ == 0,
               "bucket assignment: parameter index {} is out of range or listed twice", i);
  }
  DP_CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }),
           "bucket assignment: it does not list every one of the {} parameters", seen.size());
}

size_t mb_to_bytes(double mb) {
  DP_CHECK(std::isfinite(mb) && mb > 0, "a bucket size must be a positive number of MB, got {}",
           mb);
  DP_CHECK(mb <= kMaxBucketMb, "a bucket size of {} MB is more than {} MB (2^50 bytes)", mb,
           kMaxBucketMb);
  double bytes = std::round(mb * kBytesPerMb);
  DP_CHECK(bytes >= 4, "a bucket size of {} MB is smaller than one float", mb);
  return static_cast<size_t>(bytes);
}

}  // namespace dp
