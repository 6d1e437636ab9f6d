#pragma once
// A tensor's dimensions, stored inline (as PyTorch's c10::SizesAndStrides keeps up to five
// sizes inline): a view, a reshape or a layer's output shape is made every step, and a
// std::vector there was a heap allocation each time. The interface is the part of
// std::vector's the runtime uses.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <type_traits>

#include "runtime/core/error.h"

namespace dp {

class Shape {
 public:
  // No model here comes near it (5 at most); more is a dp::Error saying so, never an
  // overflow of the array.
  static constexpr size_t kMaxDims = 8;
  using value_type = int64_t;
  using size_type = size_t;
  using iterator = int64_t*;
  using const_iterator = const int64_t*;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  Shape(size_t n, int64_t value) {
    check_size(n);
    std::fill_n(dims_, n, value);
    size_ = n;
  }
  template <class It, class = std::enable_if_t<!std::is_integral<It>::value>>
  Shape(It first, It last) {
    assign(first, last);
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  static constexpr size_t capacity() { return kMaxDims; }
  int64_t* data() { return dims_; }
  const int64_t* data() const { return dims_; }
  iterator begin() { return dims_; }
  iterator end() { return dims_ + size_; }
  const_iterator begin() const { return dims_; }
  const_iterator end() const { return dims_ + size_; }
  int64_t& operator[](size_t i) { return dims_[i]; }
  int64_t operator[](size_t i) const { return dims_[i]; }
  int64_t& at(size_t i) {
    check_index(i);
    return dims_[i];
  }
  int64_t at(size_t i) const {
    check_index(i);
    return dims_[i];
  }
  int64_t& front() { return dims_[0]; }
  int64_t front() const { return dims_[0]; }
  int64_t& back() { return dims_[size_ - 1]; }
  int64_t back() const { return dims_[size_ - 1]; }

  void push_back(int64_t d) {
    check_size(size_ + 1);
    dims_[size_++] = d;
  }
  void pop_back() { --size_; }
  void clear() { size_ = 0; }
  void resize(size_t n, int64_t value = 0) {
    check_size(n);
    if (n > size_) std::fill(dims_ + size_, dims_ + n, value);
    size_ = n;
  }
  iterator insert(const_iterator pos, int64_t d) {
    const size_t i = size_t(pos - dims_);
    check_size(size_ + 1);
    std::copy_backward(dims_ + i, dims_ + size_, dims_ + size_ + 1);
    dims_[i] = d;
    ++size_;
    return dims_ + i;
  }
  iterator erase(const_iterator pos) {
    const size_t i = size_t(pos - dims_);
    std::copy(dims_ + i + 1, dims_ + size_, dims_ + i);
    --size_;
    return dims_ + i;
  }
  template <class It>
  void assign(It first, It last) {
    const auto n = std::distance(first, last);
    check_size(size_t(n));
    std::copy(first, last, dims_);
    size_ = size_t(n);
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    return a.size_ == b.size_ && std::equal(a.begin(), a.end(), b.begin());
  }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

 private:
  static void check_size(size_t n) {
    DP_CHECK(n <= kMaxDims, "a shape of {} dimensions: dprun's tensors have at most {}", n,
             kMaxDims);
  }
  void check_index(size_t i) const {
    DP_CHECK(i < size_, "dimension {} of a {}-dimensional shape", i, size_);
  }

  int64_t dims_[kMaxDims] = {};
  size_t size_ = 0;
};

}  // namespace dp
