#pragma once
// Which dprun this is: the release (DPRUN_VERSION, from CMake's project version) and the build
// (its git commit, "-dirty" with uncommitted changes). The release alone stayed "0.1.0" across
// hundreds of commits whose training differed: a checkpoint from another build resumed without
// a word, and ranks of two builds passed the settings agreement.
#include <string>

namespace dp {

// "0.1.0 (git 96ac29d5c1e2)", or "0.1.0" where the build was not made from a git checkout.
// What `dprun --version` prints, checkpoints record, and the ranks compare.
const std::string& dprun_version();

}  // namespace dp
