#include "runtime/comm/process_group.h"

#include <cstdio>

#include "runtime/core/clock.h"

namespace dp {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return "sum";
    case ReduceOp::avg:
      return "avg";
    case ReduceOp::min:
      return "min";
    case ReduceOp::max:
      return "max";
  }
  return "?";
}

Tensor ProcessGroup::allocate(size_t numel, DType dtype, Device device) {
  return Tensor::zeros({static_cast<int64_t>(numel)}, dtype, device);
}

std::string dump_flight_recorder(const ProcessGroup& pg) {
  const FlightRecorder& fr = pg.flight_recorder();
  fr.dump(pg.rank(), stderr);
  return fr.summary(pg.rank(), now_us());
}

}  // namespace dp
