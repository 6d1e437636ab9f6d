#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace dp {

// float32 is what every layer computes in and what gradients are reduced in; i32 holds
// labels and token ids; bf16 (stored as its 16 bits) is the GPU path's activation and GEMM
// input type under --precision bf16.
enum class DType : uint8_t { f32, i32, bf16 };

// Host-side handle of a bfloat16 value: the upper 16 bits of a float32.
struct bf16 {
  uint16_t bits;
};

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
    case DType::i32:
      return 4;
    case DType::bf16:
      return 2;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "float32";
    case DType::i32:
      return "int32";
    case DType::bf16:
      return "bfloat16";
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
template <>
struct dtype_of<bf16> {
  static constexpr DType value = DType::bf16;
};

}  // namespace dp
