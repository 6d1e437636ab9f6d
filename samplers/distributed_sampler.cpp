#include "samplers/distributed_sampler.h"

#include <numeric>
#include <utility>

#include "runtime/core/error.h"
#include "runtime/core/rng.h"

namespace dp {

namespace {

void check_size(size_t dataset_size) {
  DP_CHECK(dataset_size <= kMaxSamplerSize,
           "sampler: {} samples are more than the {} a rank can index (it keeps an 8-byte index "
           "per sample, and two per sample of its shard)",
           dataset_size, kMaxSamplerSize);
}

void check_rank(int world_size, int rank) {
  DP_CHECK(world_size >= 1, "sampler: world size must be at least 1, got {}", world_size);
  DP_CHECK(rank >= 0 && rank < world_size, "sampler: rank {} is out of range for world size {}",
           rank, world_size);
}

}  // namespace

DistributedSampler::DistributedSampler(size_t dataset_size, int world_size, int rank, bool shuffle,
                                       uint64_t seed, bool drop_last)
    : dataset_size_(dataset_size),
      world_size_(world_size),
      rank_(rank),
      shuffle_(shuffle),
      seed_(seed),
      drop_last_(drop_last) {
  check_rank(world_size, rank);
  DP_CHECK(dataset_size > 0, "sampler: the dataset is empty (0 samples)");
  check_size(dataset_size);
  const size_t world = static_cast<size_t>(world_size);
  DP_CHECK(world <= dataset_size,
           "sampler: world size {} is larger than the dataset ({} samples): some ranks would get "
           "no data",
           world_size, dataset_size);
  num_samples_ = drop_last ? dataset_size / world : (dataset_size + world - 1) / world;
  total_size_ = num_samples_ * world;
  rebuild();
}

DistributedSampler::DistributedSampler(ExactTag, size_t dataset_size, int world_size, int rank)
    : dataset_size_(dataset_size),
      world_size_(world_size),
      rank_(rank),
      shuffle_(false),
      exact_(true) {
  check_rank(world_size, rank);
  DP_CHECK(dataset_size > 0, "sampler: the dataset is empty (0 samples)");
  check_size(dataset_size);
  const size_t world = static_cast<size_t>(world_size), r = static_cast<size_t>(rank);
  num_samples_ = r < dataset_size ? (dataset_size - r + world - 1) / world : 0;
  total_size_ = dataset_size;
  rebuild();
}

DistributedSampler DistributedSampler::exact(size_t dataset_size, int world_size, int rank) {
  return DistributedSampler(ExactTag{}, dataset_size, world_size, rank);
}

std::vector<size_t> DistributedSampler::epoch_order(size_t n, bool shuffle, uint64_t seed,
                                                    uint64_t epoch) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  if (shuffle && n > 1) {
    Philox rng(seed + epoch);
    for (size_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
  }
  return order;
}

std::vector<size_t> DistributedSampler::shard(const std::vector<size_t>& order, int world_size,
                                              int rank, bool drop_last) {
  check_rank(world_size, rank);
  const size_t n = order.size(), world = static_cast<size_t>(world_size);
  const size_t per_rank = drop_last ? n / world : (n + world - 1) / world;
  std::vector<size_t> out;
  if (n == 0) return out;
  out.reserve(per_rank);
  // Position p of the padded list is order[p % n]: PyTorch's `indices += indices[:pad]`,
  // repeated as often as needed. With drop_last every p is < n, i.e. plain truncation.
  for (size_t i = 0; i < per_rank; ++i)
    out.push_back(order[(static_cast<size_t>(rank) + i * world) % n]);
  return out;
}

void DistributedSampler::rebuild() {
  if (exact_) {
    epoch_list_.clear();
    epoch_list_.reserve(num_samples_);
    for (size_t i = static_cast<size_t>(rank_); i < dataset_size_;
         i += static_cast<size_t>(world_size_))
      epoch_list_.push_back(i);
  } else {
    epoch_list_ =
        shard(epoch_order(dataset_size_, shuffle_, seed_, epoch_), world_size_, rank_, drop_last_);
  }
  start_ = 0;
  indices_ = epoch_list_;
}

void DistributedSampler::set_epoch(uint64_t epoch) {
  epoch_ = epoch;
  rebuild();
}

void DistributedSampler::set_start(size_t k) {
  DP_CHECK(k <= num_samples_,
           "sampler: cannot skip {} samples of epoch {}: rank {} has only {} samples per epoch", k,
           epoch_, rank_, num_samples_);
  start_ = k;
  indices_.assign(epoch_list_.begin() + static_cast<std::ptrdiff_t>(k), epoch_list_.end());
}

}  // namespace dp
