#include "runtime/ddp/comm_hook.h"

#include "runtime/core/error.h"
#include "runtime/ops/cast.h"
#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/device_ops.h"

namespace dp {

namespace {

void check_pair(const Tensor& f32, const Tensor& wire, DType wire_dtype, const char* what) {
  DP_CHECK(f32.defined() && wire.defined() && f32.dtype() == DType::f32 &&
               wire.dtype() == wire_dtype && f32.numel() == wire.numel() &&
               f32.device() == wire.device(),
           "{}: needs a float32 and a {} tensor of one numel on one device, got {} and {}", what,
           dtype_name(wire_dtype), f32.str(), wire.str());
}

constexpr CommHook kHooks[] = {CommHook::none, CommHook::bf16_compress, CommHook::fp16_compress};

}  // namespace

const char* comm_hook_name(CommHook hook) {
  switch (hook) {
    case CommHook::none:
      return "none";
    case CommHook::bf16_compress:
      return "bf16_compress";
    case CommHook::fp16_compress:
      return "fp16_compress";
  }
  return "?";
}

CommHook parse_comm_hook(const std::string& name) {
  for (CommHook h : kHooks) {
    if (name == comm_hook_name(h)) return h;
  }
  fail("unknown comm hook '{}'; the hooks are none, bf16_compress and fp16_compress", name);
}

DType comm_hook_wire_dtype(CommHook hook) {
  switch (hook) {
    case CommHook::none:
      break;
    case CommHook::bf16_compress:
      return DType::bf16;
    case CommHook::fp16_compress:
      return DType::f16;
  }
  return DType::f32;
}

ReduceOp comm_hook_reduce_op(CommHook hook) {
  return hook == CommHook::fp16_compress ? ReduceOp::sum : ReduceOp::avg;
}

void bf16_compress(const Tensor& grads, Tensor& wire) {
  check_pair(grads, wire, DType::bf16, "bf16_compress");
  cast_into(grads, wire);
}

void fp16_compress(Tensor& grads, Tensor& wire, int world_size) {
  check_pair(grads, wire, DType::f16, "fp16_compress");
  DP_CHECK(world_size >= 1, "fp16_compress: world size {} must be positive", world_size);
  // Divided first, in float32: the all-reduce SUMs the halves (see comm_hook.h).
  const float inv = 1.0f / static_cast<float>(world_size);
  if (world_size > 1) {
    if (grads.is_cuda()) {
      gpu::scale(grads.device().index, grads.numel(), inv, grads.f32());
    } else {
      scale(grads.numel(), inv, grads.f32());
    }
  }
  cast_into(grads, wire);
}

void decompress(const Tensor& wire, Tensor& grads) {
  DP_CHECK(wire.defined() && is_half_float(wire.dtype()),
           "decompress: the wire buffer {} is not bfloat16 or float16", wire.str());
  check_pair(grads, wire, wire.dtype(), "decompress");
  cast_into(wire, grads);
}

}  // namespace dp
