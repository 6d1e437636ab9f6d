#pragma once
// The order in which DataParallel's one loader reads an epoch: global batch s is DDP rank 0's
// batch s, then rank 1's, ..., then rank N-1's (each rank's list from DistributedSampler with
// world N and rank r, batch B), so that scatter's chunk r of step s holds exactly the samples
// DDP's rank r trains on in step s, in the same order. The last batch of an epoch has
// N x (the ranks' last, smaller batch) samples, so it still splits into N equal chunks.
//
// A read-only view of `base` for ONE epoch (the loader built over it reads indices 0, 1, ...
// in order, unshuffled): a new epoch gets a new view and a new loader, so nothing is ever
// changed under a loader's prefetch thread.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/data/dataset.h"

namespace dp {

class GlobalBatchDataset : public Dataset {
 public:
  // `base` must outlive the view. replicas >= 1 (<= base.size()), batch_size >= 1: the
  // per-replica batch; seed and epoch as DDP's samplers get them (shuffled, padded).
  GlobalBatchDataset(const Dataset& base, size_t replicas, size_t batch_size, uint64_t seed,
                     uint64_t epoch);

  size_t size() const override { return order_.size(); }
  DataKind kind() const override { return base_.kind(); }
  Shape sample_shape() const override { return base_.sample_shape(); }
  size_t sample_numel() const override { return base_.sample_numel(); }
  DType input_dtype() const override { return base_.input_dtype(); }
  size_t target_numel() const override { return base_.target_numel(); }
  int num_classes() const override { return base_.num_classes(); }
  void fill(size_t i, void* x, int32_t* y) const override { base_.fill(order_.at(i), x, y); }
  std::string describe() const override { return base_.describe(); }

  // Position i of the epoch -> the base dataset's index (what fill(i) reads).
  size_t base_index(size_t i) const { return order_.at(i); }
  // Each replica's samples per epoch (DDP's per-rank count, padding included).
  size_t per_replica() const { return per_replica_; }

 private:
  const Dataset& base_;
  size_t per_replica_ = 0;
  std::vector<size_t> order_;
};

}  // namespace dp
