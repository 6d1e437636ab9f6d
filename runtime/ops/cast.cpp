#include "runtime/ops/cast.h"

#include "runtime/core/error.h"
#include "runtime/ops/cpu/bf16_ops.h"
#include "runtime/ops/cpu/f16_ops.h"
#include "runtime/ops/device_ops.h"

namespace dp {

namespace {

// float32 -> H and H -> float32 for each 16-bit type H, on the GPU (device `dev`) or the CPU.
void narrow(bool gpu, int dev, size_t n, const float* x, bf16* y) {
  gpu ? gpu::f32_to_bf16(dev, n, x, y) : f32_to_bf16(n, x, y);
}
void narrow(bool gpu, int dev, size_t n, const float* x, f16* y) {
  gpu ? gpu::f32_to_f16(dev, n, x, y) : f32_to_f16(n, x, y);
}
void widen(bool gpu, int dev, size_t n, const bf16* x, float* y) {
  gpu ? gpu::bf16_to_f32(dev, n, x, y) : bf16_to_f32(n, x, y);
}
void widen(bool gpu, int dev, size_t n, const f16* x, float* y) {
  gpu ? gpu::f16_to_f32(dev, n, x, y) : f16_to_f32(n, x, y);
}

// Converts between float32 and H if those are the two dtypes; false if they are not.
template <typename H>
bool cast_half(const Tensor& src, Tensor& dst) {
  constexpr DType h = dtype_of<H>::value;
  const bool gpu = src.is_cuda();
  const int dev = src.device().index;
  if (src.dtype() == DType::f32 && dst.dtype() == h) {
    narrow(gpu, dev, src.numel(), src.f32(), dst.data<H>());
  } else if (src.dtype() == h && dst.dtype() == DType::f32) {
    widen(gpu, dev, src.numel(), src.data<H>(), dst.f32());
  } else {
    return false;
  }
  return true;
}

}  // namespace

void cast_into(const Tensor& src, Tensor& dst) {
  DP_CHECK(src.numel() == dst.numel() && src.device() == dst.device(),
           "cast_into: {} into {} (numel and device must match)", src.str(), dst.str());
  if (src.dtype() == dst.dtype()) return dst.copy_(src);
  if (cast_half<bf16>(src, dst) || cast_half<f16>(src, dst)) return;
  fail("cast_into: no conversion from {} to {}", dtype_name(src.dtype()), dtype_name(dst.dtype()));
}

}  // namespace dp
