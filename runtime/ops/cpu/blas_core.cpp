#include "runtime/ops/cpu/blas_core.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include <cblas.h>

namespace dp {

namespace {

bool is_one_of(const char* name, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (std::strcmp(name, n) == 0) return true;
  return false;
}

}  // namespace

const char* better_openblas_core(const char* current, bool avx512, bool avx2_fma, bool user_set) {
  if (user_set || current == nullptr) return nullptr;
  if (avx512 && !is_one_of(current, {"SkylakeX", "Cooperlake", "SapphireRapids"}))
    return "SkylakeX";
  if (!avx512 && avx2_fma &&
      !is_one_of(current, {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"}))
    return "Haswell";
  return nullptr;
}

void use_best_openblas_core(char** argv) {
  const char* current = openblas_get_corename();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const bool avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  // A re-executed process that still got the fallback must not loop.
  const bool tried = std::getenv("DPRUN_OPENBLAS_REEXEC") != nullptr;
  const char* core =
      better_openblas_core(current, avx512, avx2_fma, std::getenv("OPENBLAS_CORETYPE") != nullptr);
  if (core == nullptr || tried) return;
  setenv("OPENBLAS_CORETYPE", core, 1);
  setenv("DPRUN_OPENBLAS_REEXEC", current, 1);  // what it was, for --verbose
  execv("/proc/self/exe", argv);
  // execv failed: go on with the generic kernels (slower, still correct).
}

}  // namespace dp
