#pragma once
// Page-locked host buffers through which the MPI backend stages CUDA tensors (device to
// host, MPI on the host copy, host to device). Pinned memory makes the copies DMA transfers
// without the driver's bounce buffer, but cudaHostAlloc costs milliseconds: buffers are kept
// and reused by (dtype, numel), which for the Reducer's buckets means one allocation each
// for the whole run. Thread-safe: leases are taken on the caller's thread and returned on
// the communication thread.
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "runtime/core/tensor.h"

namespace dp {

class StagingPool {
 public:
  // `alloc` makes a new host buffer (Tensor::pinned_zeros in the backend; tests pass
  // Tensor::zeros).
  using Alloc = std::function<Tensor(const Shape&, DType)>;
  explicit StagingPool(Alloc alloc);

  // A host tensor of `shape` and `dtype`, handed back to the pool when the last copy of the
  // returned handle is destroyed. Its contents are whatever the last user left.
  std::shared_ptr<Tensor> acquire(const Shape& shape, DType dtype);

  size_t allocations() const;  // buffers made so far
  size_t idle() const;         // buffers waiting in the pool

 private:
  struct State {
    std::mutex mu;
    std::map<std::pair<DType, size_t>, std::vector<Tensor>> free;
    size_t allocations = 0;
  };
  Alloc alloc_;
  // Shared with every lease, so a lease outliving the pool returns its buffer harmlessly.
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace dp
