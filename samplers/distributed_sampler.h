#pragma once
// Which samples each rank reads, epoch by epoch (DESIGN.md, Samplers).
//
// Training mode (the constructor) has PyTorch's DistributedSampler semantics exactly:
//   num_samples = drop_last ? floor(N / world) : ceil(N / world), total = num_samples * world;
//   the epoch's order is a permutation of 0..N-1 (Fisher-Yates driven by Philox(seed + epoch)
//   when shuffling, identity otherwise) and is identical on every rank because it depends on
//   nothing but (seed, epoch); without drop_last it is padded by wrapping around to `total`,
//   with drop_last truncated to `total`; rank r takes positions r, r + world, r + 2 world ...
// Every rank therefore gets the same number of samples, hence the same number of batches,
// hence issues the same number of gradient all-reduces: the invariant that keeps DDP from
// hanging. The price is that up to world - 1 samples are seen twice per epoch.
//
// Evaluation mode (DistributedSampler::exact) gives rank r the indices r, r + world, ... < N,
// never shuffled, never padded: every sample is counted exactly once, so summed metrics are
// exact. Shards differ in size by at most one (a rank may even get none when world > N), so
// ranks may run different numbers of batches: evaluation must reduce its totals once, after
// the loop, never per batch.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dp {

// The most samples a sampler indexes: each rank keeps an 8-byte index per sample for the
// epoch's order and two more per sample of its shard (2.4 GB on one rank at this size). A data
// set that makes more (a token file cut into windows of a tiny --context) is refused where it
// is opened, naming what made the count.
constexpr size_t kMaxSamplerSize = 100'000'000;

class DistributedSampler {
 public:
  // Throws dp::Error unless world_size >= 1, 0 <= rank < world_size, dataset_size > 0 and
  // world_size <= dataset_size (a larger world would leave ranks with nothing but padding or,
  // with drop_last, with no data at all), and dataset_size <= kMaxSamplerSize (see above).
  DistributedSampler(size_t dataset_size, int world_size, int rank, bool shuffle = true,
                     uint64_t seed = 0, bool drop_last = false);

  // Evaluation sharding: rank r gets r, r + world, ... < dataset_size; no padding, no shuffle.
  // dataset_size must be 1..kMaxSamplerSize.
  static DistributedSampler exact(size_t dataset_size, int world_size, int rank);

  // Selects the epoch and rewinds to its first sample (set_start(0)).
  void set_epoch(uint64_t epoch);
  // Skips the first k samples of this rank's list for the current epoch, so that a run
  // resumed after s steps of per-rank batch B continues exactly where it stopped (k = s * B).
  // 0 <= k <= num_samples(); call it after set_epoch, which resets it.
  void set_start(size_t k);

  // This rank's remaining samples for the current epoch (after the skipped ones). Computed
  // by set_epoch / set_start, so calling it per batch costs nothing.
  const std::vector<size_t>& indices() const { return indices_; }

  // This rank's sample count for a whole epoch, skipped ones included. Equal on every rank
  // in training mode; ceil((N - rank) / world) in evaluation mode.
  size_t num_samples() const { return num_samples_; }
  // Samples per epoch over all ranks: num_samples() * world in training mode, N in evaluation.
  size_t total_size() const { return total_size_; }

  size_t dataset_size() const { return dataset_size_; }
  int world_size() const { return world_size_; }
  int rank() const { return rank_; }
  uint64_t epoch() const { return epoch_; }
  size_t start() const { return start_; }
  bool shuffle() const { return shuffle_; }
  uint64_t seed() const { return seed_; }
  bool drop_last() const { return drop_last_; }
  bool is_exact() const { return exact_; }

  // The epoch's global order, the same on every rank: a Philox(seed + epoch) Fisher-Yates
  // permutation of 0..n-1, or the identity when shuffle is false.
  static std::vector<size_t> epoch_order(size_t n, bool shuffle, uint64_t seed, uint64_t epoch);
  // PyTorch's pad-or-truncate and stride applied to an epoch order, with no policy checks
  // (world > order.size() is allowed here and pads by wrapping around as often as needed).
  static std::vector<size_t> shard(const std::vector<size_t>& order, int world_size, int rank,
                                   bool drop_last);

 private:
  struct ExactTag {};
  DistributedSampler(ExactTag, size_t dataset_size, int world_size, int rank);
  void rebuild();

  size_t dataset_size_ = 0;
  int world_size_ = 1;
  int rank_ = 0;
  bool shuffle_ = true;
  uint64_t seed_ = 0;
  bool drop_last_ = false;
  bool exact_ = false;
  size_t num_samples_ = 0;
  size_t total_size_ = 0;
  uint64_t epoch_ = 0;
  size_t start_ = 0;
  std::vector<size_t> epoch_list_;  // this rank's whole list for the epoch
  std::vector<size_t> indices_;     // epoch_list_ without its first start_ entries
};

}  // namespace dp
