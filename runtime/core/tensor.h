#pragma once
// A dense, contiguous, row-major tensor on the CPU or a CUDA device. Storage is shared
// between a tensor and its views, which is what lets every parameter's gradient BE a slice of its
// bucket's flat buffer (DESIGN.md, the Reducer): writing the gradient is writing the bucket.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/device.h"
#include "runtime/core/dtype.h"
#include "runtime/core/error.h"
#include "runtime/core/shape.h"

namespace dp {

// Both throw a dp::Error, naming the shape, where the count does not fit in a size_t.
size_t shape_numel(const Shape& s);
size_t shape_nbytes(const Shape& s, DType dtype);
std::string shape_str(const Shape& s);

// The bytes behind a tensor and its views: either one 64-byte aligned, zero-initialised
// allocation of its own, or memory owned elsewhere (a shared-memory window a process group
// allocated), kept alive by `owner` and never freed by the Storage.
class Storage {
 public:
  explicit Storage(size_t bytes);
  // Wraps `bytes` at `data` without copying or zeroing: the creator hands it over
  // initialised. `owner` (may be null) is held for as long as this Storage lives; memory
  // whose lifetime `owner` does not control must outlive every tensor over it.
  Storage(void* data, size_t bytes, std::shared_ptr<void> owner, Device device = Device::cpu());
  // Zero-initialised memory on `device` (host memory as above, or device memory).
  static std::shared_ptr<Storage> allocate(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  bool owns_memory() const { return owns_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  bool owns_ = true;
  std::shared_ptr<void> owner_;
  Device device_;
};

class Tensor {
 public:
  Tensor() = default;

  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  // A zero-filled CPU tensor in page-locked memory (needs a CUDA build): what the data
  // loader fills when batches go on to a GPU, so that their copies are asynchronous.
  static Tensor pinned_zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values);
  static Tensor from_vector(const Shape& shape, const std::vector<int32_t>& values);
  // A tensor over the first shape_numel(shape) elements of `storage` (which must hold
  // them, aligned for `dtype`); shares it, copies nothing.
  static Tensor from_storage(std::shared_ptr<Storage> storage, const Shape& shape,
                             DType dtype = DType::f32);

  // A view of `shape` starting `offset` elements into this tensor; shares the storage.
  Tensor view(size_t offset, const Shape& shape) const;
  // Same elements, another shape (numel must match); shares the storage.
  Tensor reshape(const Shape& shape) const;
  Tensor clone() const;
  // A copy on `device` (this tensor itself when it is there already).
  Tensor to(Device device) const;

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_.at(i); }
  size_t ndim() const { return shape_.size(); }
  size_t numel() const { return numel_; }
  // Cannot wrap around: every way of making a tensor checks its shape_nbytes().
  size_t nbytes() const { return numel_ * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  bool is_cuda() const { return device().is_cuda(); }
  bool shares_storage_with(const Tensor& o) const { return storage_ && storage_ == o.storage_; }

  // Where the elements are: a device pointer for a CUDA tensor (for kernels, not the host).
  void* raw() { return static_cast<char*>(storage_->data()) + offset_bytes_; }
  const void* raw() const { return static_cast<const char*>(storage_->data()) + offset_bytes_; }

  template <typename T>
  T* data() {
    check_dtype(dtype_of<T>::value);
    return static_cast<T*>(raw());
  }
  template <typename T>
  const T* data() const {
    check_dtype(dtype_of<T>::value);
    return static_cast<const T*>(raw());
  }
  float* f32() { return data<float>(); }
  const float* f32() const { return data<float>(); }

  // These work on either device (CUDA: on the device's compute stream).
  void zero_();
  void fill_(float v);                   // float32
  void copy_(const Tensor& src);         // same numel and dtype, any devices
  std::vector<float> to_vector() const;  // float32 (or bfloat16/float16, widened), to the host

  std::string str() const;  // "float32[64, 784]"

 private:
  void check_dtype(DType want) const;

  std::shared_ptr<Storage> storage_;
  size_t offset_bytes_ = 0;
  Shape shape_;
  size_t numel_ = 0;
  DType dtype_ = DType::f32;
};

// Largest |a - b| / max(1, |b|) over the elements: the comparison the tests and the
// DDP-contract checks use.
double max_rel_diff(const Tensor& a, const Tensor& b);

}  // namespace dp
