#include "runtime/dp/global_batch_dataset.h"

#include <algorithm>

#include "runtime/core/error.h"
#include "samplers/distributed_sampler.h"

namespace dp {

GlobalBatchDataset::GlobalBatchDataset(const Dataset& base, size_t replicas, size_t batch_size,
                                       uint64_t seed, uint64_t epoch)
    : base_(base) {
  DP_CHECK(replicas >= 1 && batch_size >= 1, "global batch order: {} replicas, batch {}", replicas,
           batch_size);
  // Exactly the samplers DDP's ranks build (runtime/train/trainer.cpp): shuffled, padded.
  std::vector<std::vector<size_t>> lists;
  lists.reserve(replicas);
  for (size_t r = 0; r < replicas; ++r) {
    DistributedSampler s(base.size(), static_cast<int>(replicas), static_cast<int>(r),
                         /*shuffle=*/true, seed, /*drop_last=*/false);
    s.set_epoch(epoch);
    lists.push_back(s.indices());
  }
  per_replica_ = lists[0].size();
  order_.reserve(per_replica_ * replicas);
  for (size_t first = 0; first < per_replica_; first += batch_size) {
    const size_t end = std::min(first + batch_size, per_replica_);
    for (const std::vector<size_t>& list : lists)
      order_.insert(order_.end(), list.begin() + std::ptrdiff_t(first),
                    list.begin() + std::ptrdiff_t(end));
  }
}

}  // namespace dp
