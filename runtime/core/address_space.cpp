#include "runtime/core/address_space.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

namespace dp {

AddressSpace address_space() {
  AddressSpace as;
  rlimit lim{};
  if (getrlimit(RLIMIT_AS, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return as;
  as.limited = true;
  as.limit = size_t(lim.rlim_cur);
  // The first field of /proc/self/statm is VmSize in pages. Unreadable: assume nothing is
  // mapped, so that the check can only under-refuse (MPI then reports the failure itself).
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    unsigned long pages = 0;
    if (std::fscanf(f, "%lu", &pages) == 1) as.used = size_t(pages) * size_t(sysconf(_SC_PAGESIZE));
    std::fclose(f);
  }
  return as;
}

bool exceeds_address_space(const AddressSpace& as, size_t bytes) {
  return as.limited && (as.used > as.limit || bytes > as.limit - as.used);
}

}  // namespace dp
