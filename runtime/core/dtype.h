#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace dp {

// float32 is what every layer computes in today; i32 holds labels and token ids. bf16/fp16
// join when the GPU path lands (the storage and views below are already dtype-agnostic).
enum class DType : uint8_t { f32, i32 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
    case DType::i32:
      return 4;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "float32";
    case DType::i32:
      return "int32";
  }
  return "?";
}

template <typename T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::i32;
};

}  // namespace dp
