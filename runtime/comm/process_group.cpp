#include "runtime/comm/process_group.h"

#include <cstdio>
#include <utility>

#include "runtime/core/error.h"

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

ProcessGroup::ProcessGroup(std::chrono::milliseconds timeout)
    : timeout_(timeout), flight_recorder_(std::make_shared<FlightRecorder>()) {
  DP_CHECK(timeout_.count() > 0,
           "a process group needs a positive timeout, got {} ms (nothing is waited for forever)",
           timeout_.count());
}

WorkPtr ProcessGroup::make_work(std::string description, uint64_t seq,
                                std::chrono::milliseconds timeout) const {
  std::call_once(report_once_, [this] {
    std::weak_ptr<FlightRecorder> recorder = flight_recorder_;
    report_ = Work::make_report([recorder, rank = rank()](const Work&) -> std::string {
      try {
        if (auto fr = recorder.lock()) return fr->dump_once(rank, stderr);
      } catch (...) {  // a report must not replace the error it decorates
      }
      return {};
    });
  });
  // One rank waits for no one: its collectives complete on their own, and a --timeout below the
  // time the communication thread waits for a core on a busy machine failed a healthy job
  // ("a rank is behind" with no other rank). A local hang still ends the wait. Work::timeout(),
  // which a backend's watchdog (NCCL's) reads, carries the floor too.
  auto work = std::make_shared<Work>(std::move(description), seq,
                                     timeout.count() > 0 ? timeout : timeout_, report_);
  if (size() == 1) work->set_wait_floor(kOneRankWaitFloor);
  return work;
}

Tensor ProcessGroup::allocate(size_t numel, DType dtype, Device device) {
  return Tensor::zeros({static_cast<int64_t>(numel)}, dtype, device);
}

std::string dump_flight_recorder(const ProcessGroup& pg) {
  return pg.flight_recorder().dump_once(pg.rank(), stderr);
}

}  // namespace dp
