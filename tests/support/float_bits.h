#pragma once
// A float32's bit pattern and back, for tests that compare values bit for bit.
#include <cstdint>
#include <cstring>

namespace dp::test {

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

inline float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

}  // namespace dp::test
