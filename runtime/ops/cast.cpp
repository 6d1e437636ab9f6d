#include "runtime/ops/cast.h"

#include "runtime/core/error.h"
#include "runtime/ops/cpu/bf16_ops.h"
#include "runtime/ops/device_ops.h"

namespace dp {

void cast_into(const Tensor& src, Tensor& dst) {
  DP_CHECK(src.numel() == dst.numel() && src.device() == dst.device(),
           "cast_into: {} into {} (numel and device must match)", src.str(), dst.str());
  if (src.dtype() == dst.dtype()) return dst.copy_(src);
  const size_t n = src.numel();
  const bool gpu = src.is_cuda();
  const int dev = src.device().index;
  if (src.dtype() == DType::f32 && dst.dtype() == DType::bf16) {
    if (gpu)
      gpu::f32_to_bf16(dev, n, src.f32(), dst.data<bf16>());
    else
      f32_to_bf16(n, src.f32(), dst.data<bf16>());
  } else if (src.dtype() == DType::bf16 && dst.dtype() == DType::f32) {
    if (gpu)
      gpu::bf16_to_f32(dev, n, src.data<bf16>(), dst.f32());
    else
      bf16_to_f32(n, src.data<bf16>(), dst.f32());
  } else {
    fail("cast_into: no conversion from {} to {}", dtype_name(src.dtype()),
         dtype_name(dst.dtype()));
  }
}

}  // namespace dp
