#pragma once
// The heap in use, for tests that bound what an operation keeps allocated.
#include <malloc.h>

#include <cstddef>
#include <cstdint>

#include "runtime/core/tensor.h"

namespace dp::test {

inline size_t heap_bytes() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

// The sanitizers' allocators are invisible to mallinfo2: such a build skips the bounds.
inline bool heap_visible() {
  const size_t before = heap_bytes();
  Tensor probe = Tensor::zeros({int64_t(1) << 20});
  return heap_bytes() >= before + (size_t(4) << 20);
}

}  // namespace dp::test
