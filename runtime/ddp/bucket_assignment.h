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

// Converts a size given in MB (MiB, as PyTorch's bucket_cap_mb) to bytes; fractions allowed.
size_t mb_to_bytes(double mb);

}  // namespace dp
