#pragma once
// The process's address-space limit (ulimit -v, RLIMIT_AS), for refusing a mapping that
// cannot fit before asking for it. Open MPI maps a node's whole shared window into every rank
// and, when that mmap fails, leaves the window's backing file (as large as the window) in
// /dev/shm after the job: a refusal before the call leaves nothing behind and can say why.
#include <cstddef>

namespace dp {

struct AddressSpace {
  bool limited = false;  // false: no limit (RLIM_INFINITY), the fields below are 0
  size_t limit = 0;      // bytes
  size_t used = 0;       // bytes mapped now (VmSize)
};

AddressSpace address_space();

// True when mapping `bytes` more would pass the limit.
bool exceeds_address_space(const AddressSpace& as, size_t bytes);

}  // namespace dp
