#pragma once
// A deterministic, learnable classification task that needs no files: Gaussian clusters,
// one per class. Sample i is a pure function of (seed, i), drawn from its own Philox stream,
// so every rank computes the same sample i without sharing anything, in any order.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/data/dataset.h"

namespace dp {

class SyntheticDataset : public ClassificationDataset {
 public:
  // Class centres come from Philox(seed, stream 1); sample i's label (uniform over the
  // classes) and the seed of its unit-variance, near-Gaussian noise from Philox(seed, stream
  // i + 2); x = centre[label] + noise.
  // Centre coordinates have standard deviation max(0.5, 4 / sqrt(dim)), which puts the
  // centres about 5.7 noise standard deviations apart for dim <= 64 and further beyond: an MLP
  // (even a linear model) reaches well over 90% accuracy once dim >= 16 or so. Tiny dims
  // with many classes can overlap by chance.
  // `first_index` shifts which samples this set holds (sample i is the task's sample
  // first_index + i): a test split is the same task (same centres) with other samples.
  SyntheticDataset(size_t size, size_t dim, int num_classes, uint64_t seed, size_t first_index = 0);

  size_t size() const override { return size_; }
  DataKind kind() const override { return DataKind::vectors; }
  Shape sample_shape() const override { return {static_cast<int64_t>(dim_)}; }
  size_t sample_numel() const override { return dim_; }
  int num_classes() const override { return num_classes_; }
  int32_t get(size_t i, float* dst) const override;
  std::string describe() const override;

  // Centre of class c (dim values): what a perfect classifier would compare against.
  const float* center(int c) const { return centers_.data() + static_cast<size_t>(c) * dim_; }
  float center_scale() const { return scale_; }

 private:
  size_t size_, dim_;
  int num_classes_;
  uint64_t seed_;
  size_t first_index_;
  float scale_;
  std::vector<float> centers_;  // [num_classes, dim]
};

}  // namespace dp
