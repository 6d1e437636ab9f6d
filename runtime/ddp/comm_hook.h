#pragma once
// Comm hooks (DESIGN.md, the Reducer, point 6): what a bucket becomes on the wire. PyTorch's
// bf16_compress_hook: the bucket's float32 gradients are cast to bfloat16 into a second
// buffer, that buffer is all-reduced (avg), and the result is widened back into the float32
// bucket, i.e. into the gradient views. Half the bytes on the wire, for gradients that are
// rounded to bfloat16 (8 significant bits) once per step; parameters, their broadcast and
// the optimizer stay float32.
#include <string>

#include "runtime/core/dtype.h"
#include "runtime/core/tensor.h"

namespace dp {

enum class CommHook { none, bf16_compress };

// "none", "bf16_compress": the names the command line uses.
const char* comm_hook_name(CommHook hook);
// The inverse of comm_hook_name; anything else is a dp::Error that lists the names.
CommHook parse_comm_hook(const std::string& name);
// The dtype a hook all-reduces: float32 for none, bfloat16 for bf16_compress.
DType comm_hook_wire_dtype(CommHook hook);

// wire = bfloat16(grads), rounded to nearest even; grads float32, wire bfloat16 of the same
// numel on the same device. A CUDA pair is converted on the device's compute stream (only
// enqueued), after the kernels that wrote the gradients. Allocates nothing.
void bf16_compress(const Tensor& grads, Tensor& wire);
// grads = float32(wire), exact; the same rules.
void bf16_decompress(const Tensor& wire, Tensor& grads);

}  // namespace dp
