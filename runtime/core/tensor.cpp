#include "runtime/core/tensor.h"

#include "runtime/core/half_float.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace dp {

size_t shape_numel(const Shape& s) {
  for (int64_t d : s) {
    DP_CHECK(d >= 0, "negative dimension {} in shape {}", d, shape_str(s));
    if (d == 0) return 0;  // however large the other dimensions
  }
  size_t n = 1;
  for (int64_t d : s) {
    const bool overflow = __builtin_mul_overflow(n, static_cast<size_t>(d), &n);
    DP_CHECK(!overflow, "shape {} has more elements than a 64-bit size can count", shape_str(s));
  }
  return n;
}

size_t shape_nbytes(const Shape& s, DType dtype) {
  size_t bytes = 0;
  const bool overflow = __builtin_mul_overflow(shape_numel(s), dtype_size(dtype), &bytes);
  DP_CHECK(!overflow, "a {} tensor of shape {} has more bytes than a 64-bit size can count",
           dtype_name(dtype), shape_str(s));
  return bytes;
}

std::string shape_str(const Shape& s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

Storage::Storage(size_t bytes) : bytes_(bytes) {
  constexpr size_t kAlign = 64;
  // Rounding up near 2^64 would wrap around to a 64-byte allocation.
  DP_CHECK(bytes <= SIZE_MAX - kAlign, "out of host memory allocating {} bytes", bytes);
  size_t padded = std::max<size_t>(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
  data_ = std::aligned_alloc(kAlign, padded);
  DP_CHECK(data_ != nullptr, "out of host memory allocating {} bytes", bytes);
  std::memset(data_, 0, padded);
}

Storage::Storage(void* data, size_t bytes, std::shared_ptr<void> owner, Device device)
    : data_(data), bytes_(bytes), owns_(false), owner_(std::move(owner)), device_(device) {
  DP_CHECK(data_ != nullptr || bytes_ == 0, "Storage over external memory: null data for {} bytes",
           bytes_);
}

Storage::~Storage() {
  if (owns_) std::free(data_);
}

std::shared_ptr<Storage> Storage::allocate(size_t bytes, Device device) {
  if (device.is_cpu()) return std::make_shared<Storage>(bytes);
  std::shared_ptr<void> owner;
  void* p = cuda_alloc_zeroed(bytes, device.index, &owner);
  return std::make_shared<Storage>(p, bytes, std::move(owner), device);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  const size_t bytes = shape_nbytes(shape, dtype);
  t.numel_ = shape_numel(shape);
  t.dtype_ = dtype;
  t.storage_ = Storage::allocate(bytes, device);
  return t;
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
  Tensor t = zeros(shape, DType::f32);
  DP_CHECK(values.size() == t.numel_, "from_vector: {} values for shape {}", values.size(),
           shape_str(shape));
  std::copy(values.begin(), values.end(), t.f32());
  return t;
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<int32_t>& values) {
  Tensor t = zeros(shape, DType::i32);
  DP_CHECK(values.size() == t.numel_, "from_vector: {} values for shape {}", values.size(),
           shape_str(shape));
  std::copy(values.begin(), values.end(), t.data<int32_t>());
  return t;
}

Tensor Tensor::pinned_zeros(const Shape& shape, DType dtype) {
  const size_t bytes = shape_nbytes(shape, dtype);
  std::shared_ptr<void> owner;
  void* p = cuda_host_alloc_zeroed(bytes, &owner);
  return from_storage(std::make_shared<Storage>(p, bytes, std::move(owner), Device::cpu()), shape,
                      dtype);
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, const Shape& shape, DType dtype) {
  DP_CHECK(storage != nullptr, "from_storage: null storage for a {}{} tensor", dtype_name(dtype),
           shape_str(shape));
  Tensor t;
  t.shape_ = shape;
  const size_t bytes = shape_nbytes(shape, dtype);
  t.numel_ = shape_numel(shape);
  t.dtype_ = dtype;
  DP_CHECK(bytes <= storage->bytes(), "from_storage: {} needs {} bytes, the storage has {}",
           t.str(), bytes, storage->bytes());
  DP_CHECK(reinterpret_cast<uintptr_t>(storage->data()) % dtype_size(dtype) == 0,
           "from_storage: storage at {} is not aligned for {}", storage->data(), dtype_name(dtype));
  t.storage_ = std::move(storage);
  return t;
}

Tensor Tensor::view(size_t offset, const Shape& shape) const {
  DP_CHECK(defined(), "view of an undefined tensor");
  const size_t n = shape_numel(shape);
  // Not offset + n <= numel_: that sum wraps around for an offset near 2^64.
  DP_CHECK(offset <= numel_ && n <= numel_ - offset,
           "view of {} elements at offset {} out of range of {}", n, offset, str());
  Tensor v = *this;
  v.offset_bytes_ = offset_bytes_ + offset * dtype_size(dtype_);
  v.shape_ = shape;
  v.numel_ = n;
  return v;
}

Tensor Tensor::reshape(const Shape& shape) const {
  DP_CHECK(shape_numel(shape) == numel_, "reshape {} to {}: element counts differ", str(),
           shape_str(shape));
  return view(0, shape);
}

Tensor Tensor::clone() const {
  Tensor t = zeros(shape_, dtype_, device());
  t.copy_(*this);
  return t;
}

Tensor Tensor::to(Device target) const {
  DP_CHECK(defined(), "to({}) of an undefined tensor", target.str());
  if (target == device()) return *this;
  Tensor t = zeros(shape_, dtype_, target);
  t.copy_(*this);
  return t;
}

void Tensor::zero_() {
  if (numel_ == 0) return;
  if (is_cuda()) {
    cuda_zero(raw(), device().index, nbytes());
  } else {
    std::memset(raw(), 0, nbytes());
  }
}

void Tensor::fill_(float v) {
  if (!is_cuda()) {
    std::fill_n(f32(), numel_, v);
    return;
  }
  check_dtype(DType::f32);
  if (v == 0.0f) return zero_();
  // Rare on the device (initialisation, tests): through the host rather than a kernel.
  std::vector<float> host(numel_, v);
  cuda_copy(raw(), device(), host.data(), Device::cpu(), nbytes());
}

void Tensor::copy_(const Tensor& src) {
  DP_CHECK(src.numel_ == numel_ && src.dtype_ == dtype_, "copy_ from {} into {}", src.str(), str());
  if (numel_ == 0) return;
  if (is_cuda() || src.is_cuda()) {
    cuda_copy(raw(), device(), src.raw(), src.device(), nbytes());
  } else {
    std::memmove(raw(), src.raw(), nbytes());
  }
}

namespace {

template <typename H>
std::vector<float> widened(const Tensor& t) {
  const size_t n = t.numel();
  std::vector<H> h(n);
  if (n > 0 && t.is_cuda())
    cuda_copy(h.data(), Device::cpu(), t.raw(), t.device(), t.nbytes());
  else if (n > 0)
    std::memcpy(h.data(), t.raw(), t.nbytes());
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = widen(h[i]);
  return v;
}

}  // namespace

std::vector<float> Tensor::to_vector() const {
  // 16-bit floats are widened (exactly) for the caller.
  if (dtype_ == DType::bf16) return widened<bf16>(*this);
  if (dtype_ == DType::f16) return widened<f16>(*this);
  check_dtype(DType::f32);
  std::vector<float> v(numel_);
  if (numel_ == 0) return v;
  if (is_cuda()) {
    cuda_copy(v.data(), Device::cpu(), raw(), device(), nbytes());
  } else {
    std::memcpy(v.data(), raw(), nbytes());
  }
  return v;
}

std::string Tensor::str() const {
  std::string s = fmt::format("{}{}", dtype_name(dtype_), shape_str(shape_));
  return is_cuda() ? s + " on " + device().str() : s;
}

void Tensor::check_dtype(DType want) const {
  DP_CHECK(defined(), "access to an undefined tensor");
  DP_CHECK(dtype_ == want, "tensor {} accessed as {}", str(), dtype_name(want));
}

double max_rel_diff(const Tensor& a, const Tensor& b) {
  DP_CHECK(a.numel() == b.numel(), "max_rel_diff: {} vs {}", a.str(), b.str());
  if (a.is_cuda() || b.is_cuda()) return max_rel_diff(a.to(Device::cpu()), b.to(Device::cpu()));
  const float* x = a.f32();
  const float* y = b.f32();
  double worst = 0;
  for (size_t i = 0; i < a.numel(); ++i) {
    double d = std::fabs(double(x[i]) - double(y[i])) / std::max(1.0, std::fabs(double(y[i])));
    if (std::isnan(d)) return d;
    worst = std::max(worst, d);
  }
  return worst;
}

}  // namespace dp
