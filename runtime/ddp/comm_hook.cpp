#include "runtime/ddp/comm_hook.h"

#include "runtime/core/error.h"
#include "runtime/ops/cast.h"

namespace dp {

namespace {

void check_pair(const Tensor& f32, const Tensor& b16, const char* what) {
  DP_CHECK(f32.defined() && b16.defined() && f32.dtype() == DType::f32 &&
               b16.dtype() == DType::bf16 && f32.numel() == b16.numel() &&
               f32.device() == b16.device(),
           "{}: needs a float32 and a bfloat16 tensor of one numel on one device, got {} and {}",
           what, f32.str(), b16.str());
}

}  // namespace

const char* comm_hook_name(CommHook hook) {
  switch (hook) {
    case CommHook::none:
      return "none";
    case CommHook::bf16_compress:
      return "bf16_compress";
  }
  return "?";
}

CommHook parse_comm_hook(const std::string& name) {
  for (CommHook h : {CommHook::none, CommHook::bf16_compress}) {
    if (name == comm_hook_name(h)) return h;
  }
  fail("unknown comm hook '{}'; the hooks are none and bf16_compress", name);
}

DType comm_hook_wire_dtype(CommHook hook) {
  return hook == CommHook::bf16_compress ? DType::bf16 : DType::f32;
}

void bf16_compress(const Tensor& grads, Tensor& wire) {
  check_pair(grads, wire, "bf16_compress");
  cast_into(grads, wire);
}

void bf16_decompress(const Tensor& wire, Tensor& grads) {
  check_pair(grads, wire, "bf16_decompress");
  cast_into(wire, grads);
}

}  // namespace dp
