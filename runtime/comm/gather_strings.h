#pragma once
#include <chrono>
#include <string>
#include <vector>

#include "runtime/comm/process_group.h"

namespace dp {

// Every rank contributes one string and receives all of them, indexed by rank. Strings
// travel as zero-padded int32 words (a dtype every backend moves). Collective.
std::vector<std::string> allgather_strings(ProcessGroup& pg, const std::string& mine,
                                           std::chrono::milliseconds timeout,
                                           const std::string& tag = "allgather strings");

}  // namespace dp
