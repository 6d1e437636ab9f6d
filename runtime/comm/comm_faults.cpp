#include "runtime/comm/comm_faults.h"

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "runtime/core/error.h"
#include "runtime/core/log.h"

namespace dp {

ShmStall ShmStall::from_env() {
  ShmStall s;
  const char* spec = std::getenv("DPRUN_FAULT_SHM_STALL");
  if (spec == nullptr || *spec == '\0') return s;
  unsigned long long seq = 0;
  long long ms = 0;
  DP_CHECK(std::sscanf(spec, "rank=%d,seq=%llu,barrier=%d,ms=%lld", &s.rank, &seq, &s.barrier,
                       &ms) == 4 &&
               (s.barrier == 1 || s.barrier == 2) && ms >= 0,
           "DPRUN_FAULT_SHM_STALL='{}': expected rank=R,seq=N,barrier=1|2,ms=M", spec);
  s.seq = seq;
  s.delay = std::chrono::milliseconds(ms);
  return s;
}

void ShmStall::maybe_stall(int r, uint64_t n, int b) const {
  if (r != rank || n != seq || b != barrier) return;
  log::warn("DPRUN_FAULT_SHM_STALL: stalling {} ms before barrier {} of collective #{}",
            delay.count(), b, n);
  std::this_thread::sleep_for(delay);
}

InitStall InitStall::from_env() {
  InitStall s;
  const char* spec = std::getenv("DPRUN_FAULT_INIT_STALL");
  if (spec == nullptr || *spec == '\0') return s;
  DP_CHECK(std::sscanf(spec, "rank=%d,seconds=%lf", &s.rank, &s.seconds) == 2 && s.seconds >= 0,
           "DPRUN_FAULT_INIT_STALL='{}': expected rank=R,seconds=T", spec);
  return s;
}

void InitStall::maybe_stall(const std::string& r) const {
  if (rank < 0 || r != std::to_string(rank)) return;
  // No log:: yet: it names the rank MPI gives, which does not exist before MPI_Init.
  std::fprintf(stderr,
               "dprun: warning: [rank %s] DPRUN_FAULT_INIT_STALL: stalling %g s before "
               "MPI initialisation\n",
               r.c_str(), seconds);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

}  // namespace dp
