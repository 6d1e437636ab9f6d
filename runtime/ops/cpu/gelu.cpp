#include "runtime/ops/cpu/gelu.h"

#include "runtime/core/simd_clones.h"
#include "runtime/ops/cpu/float_io.h"

namespace dp {

namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

// 0.5 (1 + tanh(u)) = sigmoid(2u): one exp and a division, accurate in relative terms
// everywhere (no 1 - 2/(e^2u + 1) cancellation).
DP_SIMD_INLINE float gelu_sigmoid(float x) {
  const float u = kSqrt2OverPi * (x + kCubic * x * x * x);
  return 1.0f / (1.0f + cpu_io::exp_clamped(-2.0f * u));
}

template <typename T>
DP_SIMD_INLINE void forward(size_t n, const T* __restrict__ x, T* __restrict__ y) {
  for (size_t i = 0; i < n; ++i) {
    const float v = cpu_io::load(x[i]);
    cpu_io::store(y[i], v * gelu_sigmoid(v));
  }
}

// d/dx [x s(x)] with s = sigmoid(2u): s + 2 x s (1 - s) u'(x).
template <typename T>
DP_SIMD_INLINE void backward(size_t n, const T* x, const T* dy, T* dx) {
  for (size_t i = 0; i < n; ++i) {
    const float v = cpu_io::load(x[i]);
    const float s = gelu_sigmoid(v);
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kCubic * v * v);
    cpu_io::store(dx[i], cpu_io::load(dy[i]) * (s + 2.0f * v * s * (1.0f - s) * du));
  }
}

}  // namespace

DP_SIMD_CLONES void gelu_forward(size_t n, const float* x, float* y) {
  forward(n, x, y);
}
DP_SIMD_CLONES void gelu_forward(size_t n, const bf16* x, bf16* y) {
  forward(n, x, y);
}
DP_SIMD_CLONES void gelu_backward(size_t n, const float* x, const float* dy, float* dx) {
  backward(n, x, dy, dx);
}
DP_SIMD_CLONES void gelu_backward(size_t n, const bf16* x, const bf16* dy, bf16* dx) {
  backward(n, x, dy, dx);
}

}  // namespace dp
