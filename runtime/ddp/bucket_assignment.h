#pragma once
#include <cstddef>
#include <vector>

namespace dp {

// Groups parameters into buckets, walking `order` (the order gradients are expected to
// become ready: reverse registration at first, the observed order after the first step).
// Bucket 0 is capped at first_cap_bytes (small, so the first all-reduce starts early),
// every later bucket at cap_bytes. A bucket is closed before it would exceed its cap, so a
// bucket only exceeds the cap when it holds a single parameter larger than the cap.
// Returns, per bucket, the parameter indices in the order they were added.
std::vector<std::vector<size_t>> assign_buckets(const std::vector<size_t>& order,
                                                const std::vector<size_t>& param_bytes,
                                                size_t first_cap_bytes, size_t cap_bytes);

// Checks that `assignment` lists each of `num_params` parameters exactly once, in non-empty
// buckets; throws dp::Error saying what is wrong.
void check_assignment(const std::vector<std::vector<size_t>>& assignment, size_t num_params);

// The largest bucket cap, 2^50 bytes (2^30 MB): far beyond any model, and well inside what a
// double converts to size_t exactly (a larger MB count overflowed the conversion).
constexpr double kMaxBucketMb = 1073741824.0;

// Converts a size given in MB (MiB, as PyTorch's bucket_cap_mb) to bytes; fractions allowed,
// from one float (4 bytes) to kMaxBucketMb.
size_t mb_to_bytes(double mb);

}  // namespace dp
