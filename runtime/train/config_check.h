#pragma once
// DESIGN.md, "Errors": configuration is compared across ranks BEFORE the first collective
// that depends on it. Ranks started with different options (an MPMD launch, a config file
// that differs between nodes) would otherwise issue different collectives (a different batch
// count, bucket layout or accumulation) and hang or, worse, silently train something else.
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "runtime/comm/process_group.h"
#include "runtime/train/train_config.h"

namespace dp {

class Dataset;

// A short hash of a few of `d`'s samples (inputs and targets), for comparing data across ranks.
std::string data_fingerprint(const Dataset& d);

// The "training data" setting of token data: "572 windows of 32 tokens (int32), vocabulary 257".
// (Strings: resume_check rewrites an older checkpoint's record in these words.)
std::string token_data_setting(const std::string& windows, const std::string& context,
                               const std::string& dtype, const std::string& vocab);

// ("--option", "value") for every setting that must be equal on all ranks, plus what the
// data turned out to be (sizes and shapes, not paths: node-local copies may live elsewhere).
std::vector<std::pair<std::string, std::string>> collective_settings(const TrainConfig& c,
                                                                     const Dataset& train,
                                                                     const Dataset* test);

// "" when every rank's settings equal rank 0's, else a message naming the first difference.
std::string describe_settings_mismatch(const std::vector<std::vector<std::string>>& per_rank);

// Collective: throws dp::CollectiveError (the same message on every rank) on a difference.
void verify_settings_match(const std::vector<std::pair<std::string, std::string>>& settings,
                           ProcessGroup& pg, std::chrono::milliseconds timeout);

}  // namespace dp
