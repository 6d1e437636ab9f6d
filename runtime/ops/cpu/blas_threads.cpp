#include "runtime/ops/cpu/blas_threads.h"

#include <algorithm>
#include <cstdlib>

#include <cblas.h>
#include <fmt/format.h>

#include "runtime/launch/cpu_topology.h"

namespace dp {

namespace {

// A positive count from the variable, or 0 when it is unset or not a positive number
// (OpenBLAS itself ignores such values).
int env_threads(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return end != v && *end == '\0' && n > 0 && n < 1 << 20 ? int(n) : 0;
}

std::string g_reason;  // configure_blas_threads' last choice, for the header

}  // namespace

BlasThreads choose_blas_threads(int cpus, int local_ranks, int user_threads, int library_threads) {
  BlasThreads b;
  if (user_threads > 0) {
    b.threads = user_threads;
    b.reason = "as set in the environment";
    return b;
  }
  cpus = std::max(cpus, 1);
  local_ranks = std::max(local_ranks, 1);
  b.threads = std::max(1, std::min(cpus / local_ranks, std::max(library_threads, 1)));
  b.reason = fmt::format("{} CPU(s) in this rank's affinity mask, {} rank(s) on this node", cpus,
                         local_ranks);
  return b;
}

BlasThreads configure_blas_threads(int local_ranks) {
  // OpenBLAS reads OPENBLAS_NUM_THREADS first, then GOTO_NUM_THREADS, then OMP_NUM_THREADS.
  int user = env_threads("OPENBLAS_NUM_THREADS");
  if (user == 0) user = env_threads("GOTO_NUM_THREADS");
  if (user == 0) user = env_threads("OMP_NUM_THREADS");
  const int library = openblas_get_num_threads();
  BlasThreads b = choose_blas_threads(int(affinity_cpus().size()), local_ranks, user, library);
  if (user > 0) {
    b.threads = library;  // the library applied the variable itself (and capped it)
  } else if (b.threads != library) {
    openblas_set_num_threads(b.threads);
  }
  g_reason = b.reason;
  return b;
}

std::string describe_blas_threads() {
  const int n = openblas_get_num_threads();
  return fmt::format("{} thread{}{}", n, n == 1 ? "" : "s",
                     g_reason.empty() ? "" : ": " + g_reason);
}

}  // namespace dp
