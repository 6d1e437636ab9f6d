#pragma once
// Start-up settings that decide which collectives a rank joins while the process group is
// built (--allreduce-algo, --no-shm, the test split DPRUN_NODE_SPLIT): a rank that differs
// would skip the hierarchical set-up's communicator splits, or take the flat path's, while
// the others wait in theirs: mismatched collectives, a hang or a raw MPI error. dprun's
// settings check compares every option, but only through the group these decide, so the
// group compares these first, before any collective that depends on them.
#include <mpi.h>

#include <string>
#include <vector>

namespace dp {

struct AgreedSetting {
  const char* name;                // as the user wrote it: "--allreduce-algo"
  int value;                       // this rank's
  std::string (*text)(int value);  // how a value reads in the error
};

// Collective over `comm`: one MPI_Allreduce of a fixed size (two words per setting), whatever
// the values. When a setting differs between ranks, every rank throws the same
// dp::CollectiveError naming it and two ranks that differ: "the ranks were started with
// different settings: --allreduce-algo is 'auto' on rank 0 but 'flat' on rank 3".
void agree_settings(MPI_Comm comm, const std::vector<AgreedSetting>& settings);

}  // namespace dp
