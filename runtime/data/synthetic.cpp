#include "runtime/data/synthetic.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "runtime/core/error.h"
#include "runtime/core/rng.h"

namespace dp {

SyntheticDataset::SyntheticDataset(size_t size, size_t dim, int num_classes, uint64_t seed,
                                   size_t first_index)
    : size_(size), dim_(dim), num_classes_(num_classes), seed_(seed), first_index_(first_index) {
  DP_CHECK(size > 0, "synthetic dataset: size must be > 0");
  DP_CHECK(dim > 0, "synthetic dataset: dim must be > 0");
  DP_CHECK(num_classes >= 2, "synthetic dataset: num_classes must be >= 2, got {}", num_classes);
  // Keeps the expected centre distance (scale * sqrt(2 dim)) at least ~5.7 noise sigmas: far
  // enough apart to learn, close enough in low dims that the task is not trivial.
  scale_ = std::max(0.5f, 4.0f / std::sqrt(static_cast<float>(dim)));
  centers_.resize(static_cast<size_t>(num_classes) * dim);
  Philox rng(seed, 1);
  for (float& c : centers_) c = scale_ * rng.normal();
}

int32_t SyntheticDataset::get(size_t i, float* dst) const {
  DP_CHECK(i < size_, "synthetic dataset: sample {} out of range ({} samples)", i, size_);
  Philox rng(seed_, static_cast<uint64_t>(first_index_ + i) + 2);
  const int32_t label = static_cast<int32_t>(rng.below(static_cast<uint64_t>(num_classes_)));
  const float* c = center(label);
  for (size_t k = 0; k < dim_; ++k) dst[k] = c[k] + rng.normal();
  return label;
}

std::string SyntheticDataset::describe() const {
  return fmt::format("synthetic: {} samples of dim {}, {} classes, seed {}", size_, dim_,
                     num_classes_, seed_);
}

}  // namespace dp
