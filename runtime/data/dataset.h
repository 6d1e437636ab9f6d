#pragma once
// A labelled classification dataset as the DataLoader sees it: random access by index into
// float features. Every method is const and must be safe to call from several threads at
// once (the DataLoader's prefetch thread reads while the trainer may query sizes).
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/core/tensor.h"

namespace dp {

class Dataset {
 public:
  virtual ~Dataset() = default;

  virtual size_t size() const = 0;
  // One sample's shape, e.g. {784} for flattened 28x28 images.
  virtual Shape sample_shape() const = 0;
  virtual size_t sample_numel() const = 0;
  virtual int num_classes() const = 0;
  // Writes sample i's features into dst[0, sample_numel()) and returns its label, which is
  // in [0, num_classes()). i must be < size().
  virtual int32_t get(size_t i, float* dst) const = 0;
  // One line for logs: what was loaded, from where, how big.
  virtual std::string describe() const = 0;

 protected:
  Dataset() = default;
  Dataset(const Dataset&) = default;
  Dataset(Dataset&&) = default;
  Dataset& operator=(const Dataset&) = default;
  Dataset& operator=(Dataset&&) = default;
};

}  // namespace dp
