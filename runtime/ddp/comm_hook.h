#pragma once
// Comm hooks (DESIGN.md, the Reducer, point 6): what a bucket becomes on the wire. The
// bucket's float32 gradients are cast to a 16-bit type into a second buffer, that buffer is
// all-reduced, and the result is widened back into the float32 bucket, i.e. into the
// gradient views. Half the bytes on the wire, for gradients that are rounded once per step;
// parameters, their broadcast and the optimizer stay float32.
//
//  - bf16_compress (PyTorch's bf16_compress_hook): cast to bfloat16 (8 significant bits,
//    float32's exponent range), all-reduce avg.
//  - fp16_compress (PyTorch's fp16_compress_hook): IEEE half has 11 significant bits but
//    only the range +-65504. A rank's gradient that fits could still overflow once the ranks'
//    values are summed (the all-reduce forms the sum before any average), so, as PyTorch does,
//    each rank divides its gradients by the world size BEFORE the cast (in float32, as a
//    multiplication by 1/world) and the all-reduce SUMs the pre-divided halves: every partial
//    sum is then bounded by the largest per-rank magnitude, never by world times it. Dividing
//    first also lets gradients up to world * 65504 through. A gradient still beyond +-65504
//    after the division becomes +-infinity on the wire and in the reduced gradient, as in
//    PyTorch: nothing is clamped or refused (an inf/NaN gradient is the optimizer's or the
//    grad scaler's to handle); small values lose precision in half's subnormals below 2^-14
//    and flush to zero below 2^-25 (bf16_compress keeps float32's range for both ends).
#include <string>

#include "runtime/comm/process_group.h"
#include "runtime/core/dtype.h"
#include "runtime/core/tensor.h"

namespace dp {

enum class CommHook { none, bf16_compress, fp16_compress };

// "none", "bf16_compress", "fp16_compress": the names the command line uses.
const char* comm_hook_name(CommHook hook);
// The inverse of comm_hook_name; anything else is a dp::Error that lists the names.
CommHook parse_comm_hook(const std::string& name);
// The dtype a hook all-reduces: float32 for none, bfloat16 for bf16_compress, float16 for
// fp16_compress.
DType comm_hook_wire_dtype(CommHook hook);
// The reduction a hook runs on its wire buffer: avg, except sum for fp16_compress (whose
// compression already divided by the world size).
ReduceOp comm_hook_reduce_op(CommHook hook);

// wire = bfloat16(grads), rounded to nearest even; grads float32, wire bfloat16 of the same
// numel on the same device. A CUDA pair is converted on the device's compute stream (only
// enqueued), after the kernels that wrote the gradients. Allocates nothing.
void bf16_compress(const Tensor& grads, Tensor& wire);
// grads *= 1 / world_size IN PLACE (float32), then wire = float16(grads), rounded to nearest
// even, overflowing to +-infinity past 65504; wire float16. Otherwise as bf16_compress.
void fp16_compress(Tensor& grads, Tensor& wire, int world_size);
// grads = float32(wire), exact, from a bfloat16 or float16 wire buffer; the same rules.
void decompress(const Tensor& wire, Tensor& grads);

}  // namespace dp
