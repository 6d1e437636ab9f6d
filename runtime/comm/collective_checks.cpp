#include "runtime/comm/collective_checks.h"

#include <fmt/format.h>

#include "runtime/core/error.h"

namespace dp {
namespace {

void check_tensor(const Tensor& t, const char* role, const std::string& op,
                  const std::string& tag) {
  DP_CHECK(t.defined(), "{} '{}': the {} tensor is undefined (never allocated)", op, tag, role);
  // CPU and CUDA tensors are both accepted: NCCL stages CPU tensors through its device, the
  // MPI backend stages CUDA tensors through host memory.
  switch (t.dtype()) {
    case DType::f32:
    case DType::i32:
    case DType::bf16:  // what the compressing comm hooks put on the wire; summed in float32
    case DType::f16:
      return;
  }
  fail(
      "{} '{}': the {} tensor has an unsupported dtype {} (code {}); collectives take float32, "
      "int32, bfloat16 and float16",
      op, tag, role, dtype_name(t.dtype()), static_cast<int>(t.dtype()));
}

}  // namespace

void check_allreduce(const Tensor& t, ReduceOp op, const std::string& tag) {
  check_tensor(t, "input", "allreduce", tag);
  DP_CHECK(op != ReduceOp::avg || t.dtype() != DType::i32,
           "allreduce '{}': avg of {} is not defined (an integer average would truncate); "
           "reduce with sum and divide where you need it",
           tag, t.str());
  // Rejected on every backend alike (NCCL could do them), so that a program behaves the same
  // whichever backend runs it; gradient compression needs only sum and avg.
  DP_CHECK(!is_half_float(t.dtype()) || op == ReduceOp::sum || op == ReduceOp::avg,
           "allreduce '{}': {} of {} is not supported; {} all-reduces take sum and avg "
           "(reduce a float32 copy for min/max)",
           tag, reduce_op_name(op), t.str(), dtype_name(t.dtype()));
}

void check_broadcast(const Tensor& t, int root, int world_size, const std::string& tag) {
  check_tensor(t, "input", "broadcast", tag);
  DP_CHECK(root >= 0 && root < world_size,
           "broadcast '{}': root {} is out of range; ranks are 0..{} in a world of {}", tag, root,
           world_size - 1, world_size);
}

void check_allgather(const Tensor& in, const Tensor& out, int world_size, const std::string& tag) {
  check_tensor(in, "input", "allgather", tag);
  check_tensor(out, "output", "allgather", tag);
  DP_CHECK(in.device() == out.device(),
           "allgather '{}': input {} is on {} but output {} is on {}; both must be on one device",
           tag, in.str(), in.device().str(), out.str(), out.device().str());
  DP_CHECK(in.dtype() == out.dtype(), "allgather '{}': input {} and output {} differ in dtype", tag,
           in.str(), out.str());
  DP_CHECK(out.numel() == in.numel() * size_t(world_size),
           "allgather '{}': the output {} has {} elements; it needs world size {} x {} input "
           "elements = {}",
           tag, out.str(), out.numel(), world_size, in.numel(), in.numel() * size_t(world_size));
}

std::string describe_allreduce(const Tensor& t, ReduceOp op, const std::string& tag) {
  return fmt::format("allreduce({}) {} '{}'", reduce_op_name(op), t.str(), tag);
}

std::string describe_broadcast(const Tensor& t, int root, const std::string& tag) {
  return fmt::format("broadcast(root={}) {} '{}'", root, t.str(), tag);
}

std::string describe_allgather(const Tensor& in, const Tensor& out, const std::string& tag) {
  return fmt::format("allgather {} -> {} '{}'", in.str(), out.str(), tag);
}

std::string describe_barrier(const std::string& tag) {
  return fmt::format("barrier '{}'", tag);
}

}  // namespace dp
