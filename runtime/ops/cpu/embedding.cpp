#include "runtime/ops/cpu/embedding.h"

#include "runtime/core/error.h"
#include "runtime/ops/cpu/float_io.h"

namespace dp {

namespace {

template <typename T>
int64_t lookup(size_t n, size_t dim, size_t num, const float* weight, const int32_t* idx, T* out) {
  for (size_t i = 0; i < n; ++i) {
    const int32_t k = idx[i];
    if (k < 0 || static_cast<size_t>(k) >= num) return static_cast<int64_t>(i);
    const float* __restrict__ row = weight + static_cast<size_t>(k) * dim;
    T* __restrict__ o = out + i * dim;
    for (size_t c = 0; c < dim; ++c) cpu_io::store(o[c], row[c]);
  }
  return -1;
}

template <typename T>
void scatter_add(size_t n, size_t dim, size_t num, const T* dout, const int32_t* idx,
                 float* dweight) {
  for (size_t i = 0; i < n; ++i) {
    DP_CHECK(idx[i] >= 0 && static_cast<size_t>(idx[i]) < num,
             "embedding backward: index {} at position {} is outside [0, {}) (the indices "
             "changed after forward)",
             idx[i], i, num);
    float* __restrict__ row = dweight + static_cast<size_t>(idx[i]) * dim;
    const T* __restrict__ g = dout + i * dim;
    for (size_t c = 0; c < dim; ++c) row[c] += cpu_io::load(g[c]);
  }
}

}  // namespace

int64_t embedding_forward(size_t n, size_t dim, size_t num, const float* weight, const int32_t* idx,
                          float* out) {
  return lookup(n, dim, num, weight, idx, out);
}

int64_t embedding_forward(size_t n, size_t dim, size_t num, const float* weight, const int32_t* idx,
                          bf16* out) {
  return lookup(n, dim, num, weight, idx, out);
}

void embedding_backward(size_t n, size_t dim, size_t num, const float* dout, const int32_t* idx,
                        float* dweight) {
  scatter_add(n, dim, num, dout, idx, dweight);
}

void embedding_backward(size_t n, size_t dim, size_t num, const bf16* dout, const int32_t* idx,
                        float* dweight) {
  scatter_add(n, dim, num, dout, idx, dweight);
}

}  // namespace dp
