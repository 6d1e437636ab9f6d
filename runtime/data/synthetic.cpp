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

namespace {

// SplitMix64 at position k of a stream: a pure function of (state, k), so the loop below
// has no dependency from one element to the next.
inline uint64_t splitmix64(uint64_t state, uint64_t k) {
  uint64_t z = state + (k + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

int32_t SyntheticDataset::get(size_t i, float* dst) const {
  DP_CHECK(i < size_, "synthetic dataset: sample {} out of range ({} samples)", i, size_);
  // Philox picks sample i's label and seeds its noise; the noise itself comes from SplitMix64,
  // ~20x cheaper per value than Philox + Box-Muller: the data loader shares the rank's core with
  // training, so generating a batch must cost little next to computing on it.
  Philox rng(seed_, static_cast<uint64_t>(first_index_ + i) + 2);
  const int32_t label = static_cast<int32_t>(rng.below(static_cast<uint64_t>(num_classes_)));
  const uint64_t state = rng.next_u64();
  const float* c = center(label);
  // Irwin-Hall with 4 uniforms (the four 16-bit parts of one draw): mean 2, variance 1/3 in
  // units of 65536, rescaled to a unit-variance, near-Gaussian noise.
  constexpr float kScale = 1.7320508f / 65536.0f;
  for (size_t k = 0; k < dim_; ++k) {
    const uint64_t z = splitmix64(state, k);
    const float sum =
        static_cast<float>((z & 0xFFFF) + ((z >> 16) & 0xFFFF) + ((z >> 32) & 0xFFFF) + (z >> 48));
    dst[k] = c[k] + sum * kScale - 2.0f * 1.7320508f;
  }
  return label;
}

std::string SyntheticDataset::describe() const {
  return fmt::format("synthetic: {} samples of dim {}, {} classes, seed {}", size_, dim_,
                     num_classes_, seed_);
}

}  // namespace dp
