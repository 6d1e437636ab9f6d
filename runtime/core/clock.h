#pragma once
// One monotonic clock for every timestamp the runtime records (Work start/end, layer
// spans, trace events), so that intervals from different threads can be compared.
#include <time.h>

#include <chrono>
#include <cstdint>

namespace dp {

inline double now_us() {
  using namespace std::chrono;
  return duration<double, std::micro>(steady_clock::now().time_since_epoch()).count();
}

// The CPU time the calling thread has run, in us: unlike now_us(), it does not advance while
// the thread waits for a core (another thread of the process, another process, runs there).
inline double thread_cpu_us() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) * 1e6 + double(t.tv_nsec) / 1e3;
}

}  // namespace dp
