#include "runtime/ops/pool_ops.h"

#include "runtime/core/error.h"
#include "runtime/ops/cpu/pool.h"
#include "runtime/ops/cuda/pool.h"

namespace dp::ops {

namespace {

void check(const char* op, const Window2d& g, const Tensor& in, const Tensor& out,
           const Tensor& argmax) {
  DP_CHECK(g.valid() && (in.dtype() == DType::f32 || in.dtype() == DType::bf16) &&
               out.dtype() == in.dtype() && argmax.dtype() == DType::i32 &&
               in.numel() == static_cast<size_t>(g.batch * g.channels * g.plane()) &&
               out.numel() == static_cast<size_t>(g.batch * g.channels * g.positions()) &&
               argmax.numel() == out.numel() && in.device() == out.device() &&
               argmax.device() == in.device(),
           "{}: {} -> {} (argmax {}) does not fit a {}x{} window, stride {}, padding {} over "
           "{}x{}x{}x{} (float32 or bfloat16, int32 argmax, one device)",
           op, in.str(), out.str(), argmax.str(), g.kernel, g.kernel, g.stride, g.padding, g.batch,
           g.channels, g.height, g.width);
  DP_CHECK(g.plane() <= (int64_t{1} << 31) - 1, "{}: {}x{} planes exceed the int32 argmax", op,
           g.height, g.width);
}

}  // namespace

void maxpool2d_forward(const Tensor& x, const Window2d& g, Tensor& y, Tensor& argmax) {
  check("maxpool2d", g, x, y, argmax);
  if (x.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::maxpool2d_forward(x.device().index, x.dtype(), g, x.raw(), y.raw(),
                           argmax.data<int32_t>());
    return;
#else
    fail("maxpool2d: {} is a CUDA tensor but dprun was built without CUDA", x.str());
#endif
  }
  if (x.dtype() == DType::bf16)
    dp::maxpool2d_forward(g, x.data<bf16>(), y.data<bf16>(), argmax.data<int32_t>());
  else
    dp::maxpool2d_forward(g, x.f32(), y.f32(), argmax.data<int32_t>());
}

void maxpool2d_backward(const Tensor& dy, const Tensor& argmax, const Window2d& g, Tensor& dx) {
  check("maxpool2d backward", g, dx, dy, argmax);
  if (dy.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::maxpool2d_backward(dy.device().index, dy.dtype(), g, dy.raw(), argmax.data<int32_t>(),
                            dx.raw());
    return;
#else
    fail("maxpool2d backward: {} is a CUDA tensor but dprun was built without CUDA", dy.str());
#endif
  }
  if (dy.dtype() == DType::bf16)
    dp::maxpool2d_backward(g, dy.data<bf16>(), argmax.data<int32_t>(), dx.data<bf16>());
  else
    dp::maxpool2d_backward(g, dy.f32(), argmax.data<int32_t>(), dx.f32());
}

}  // namespace dp::ops
