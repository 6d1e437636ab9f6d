#pragma once
// A dataset as the DataLoader sees it: random access by index to samples of one of two
// forms,
//   classification: float32 features + one int32 label          (images, vectors)
//   sequence:       int32 tokens + target_numel() int32 targets (tokens: next-token prediction)
// Every method is const and must be safe to call from several threads at once (the
// DataLoader's prefetch and worker threads read while the trainer may query sizes).
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/core/dtype.h"
#include "runtime/core/tensor.h"

namespace dp {

// What a sample is, so that a model can refuse data it does not fit (a CNN needs images,
// a language model tokens) with a message instead of a shape mismatch deep in forward.
enum class DataKind {
  vectors,  // sample_shape {D}: float features with no spatial layout
  images,   // sample_shape {C, H, W}: float pixels, channel-major (NCHW without the batch)
  tokens,   // sample_shape {T}: int32 token ids, num_classes() is the vocabulary size
};
// "vectors", "images", "tokens".
inline const char* data_kind_name(DataKind k) {
  switch (k) {
    case DataKind::vectors:
      return "vectors";
    case DataKind::images:
      return "images";
    case DataKind::tokens:
      return "tokens";
  }
  return "?";
}

class Dataset {
 public:
  virtual ~Dataset() = default;

  virtual size_t size() const = 0;
  virtual DataKind kind() const = 0;
  // One sample's input shape without the batch dimension: {D}, {C, H, W} or {T}.
  virtual Shape sample_shape() const = 0;
  // Elements of one sample's input (the product of sample_shape()).
  virtual size_t sample_numel() const = 0;
  // The element type of the input: f32 (features, pixels) or i32 (tokens).
  virtual DType input_dtype() const { return DType::f32; }
  // Targets per sample: 1 (a class label) or T (the next token at each position).
  virtual size_t target_numel() const { return 1; }
  // Every target is in [0, num_classes()): the class count, or the vocabulary size.
  virtual int num_classes() const = 0;
  // Writes sample i's input (sample_numel() elements of input_dtype()) to x and its
  // target_numel() targets to y. i must be < size().
  virtual void fill(size_t i, void* x, int32_t* y) const = 0;
  // One line for logs: what was loaded, from where, how big.
  virtual std::string describe() const = 0;

 protected:
  Dataset() = default;
  Dataset(const Dataset&) = default;
  Dataset(Dataset&&) = default;
  Dataset& operator=(const Dataset&) = default;
  Dataset& operator=(Dataset&&) = default;
};

// Float features and one label per sample: implement get(), fill() follows.
class ClassificationDataset : public Dataset {
 public:
  // Writes sample i's features into dst[0, sample_numel()) and returns its label, which is
  // in [0, num_classes()). i must be < size().
  virtual int32_t get(size_t i, float* dst) const = 0;

  void fill(size_t i, void* x, int32_t* y) const final { *y = get(i, static_cast<float*>(x)); }
  // Final: the loader's buffers and the label check rely on exactly one f32 input and one label.
  DType input_dtype() const final { return DType::f32; }
  size_t target_numel() const final { return 1; }
};

}  // namespace dp
