#pragma once
// One monotonic clock for every timestamp the runtime records (Work start/end, layer
// spans, trace events), so that intervals from different threads can be compared.
#include <chrono>
#include <cstdint>

namespace dp {

inline double now_us() {
  using namespace std::chrono;
  return duration<double, std::micro>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace dp
