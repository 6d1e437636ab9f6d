#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace dp {

// float32 is what every layer computes in and what gradients are reduced in; i32 holds
// labels and token ids; bf16 (stored as its 16 bits) is the GPU path's activation and GEMM
// input type under --precision bf16; f16 (IEEE half, stored as its 16 bits) is what the
// fp16_compress comm hook puts on the wire.
enum class DType : uint8_t { f32, i32, bf16, f16 };

// Host-side handle of a bfloat16 value: the upper 16 bits of a float32.
struct bf16 {
  uint16_t bits;
};

// Host-side handle of an IEEE 754 binary16 value (1 sign, 5 exponent, 10 mantissa bits).
struct f16 {
  uint16_t bits;
};

// The 16-bit floating-point storage types: widened to float32 for any arithmetic.
inline bool is_half_float(DType t) {
  return t == DType::bf16 || t == DType::f16;
}

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
    case DType::i32:
      return 4;
    case DType::bf16:
    case DType::f16:
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
    case DType::f16:
      return "float16";
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
template <>
struct dtype_of<f16> {
  static constexpr DType value = DType::f16;
};

}  // namespace dp
