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

// Every rank contributes lines (none may contain '\n') and receives every rank's lines,
// indexed by rank: what the cross-rank consistency checks compare. Collective.
std::vector<std::vector<std::string>> allgather_lines(ProcessGroup& pg,
                                                      const std::vector<std::string>& mine,
                                                      std::chrono::milliseconds timeout,
                                                      const std::string& tag);

}  // namespace dp
