#pragma once
// The checkpoint directory (--checkpoint-dir): file names, choosing the one to resume from,
// keeping the newest K of the run that writes.
#include <cstdint>
#include <string>
#include <vector>

namespace dp {

// "DIR/step-00000037.ckpt": the step in the name sorts the files and needs no reading.
std::string checkpoint_path(const std::string& dir, uint64_t step);

// Whether a file name (no directory) is a checkpoint's: "step-<digits>.ckpt".
bool is_checkpoint_name(const std::string& name);

// The checkpoints of `dir` (by name), newest step first.
struct CheckpointEntry {
  uint64_t step = 0;
  std::string path;
};
std::vector<CheckpointEntry> list_checkpoints(const std::string& dir);

// --resume auto: the newest checkpoint of `dir` that reads and verifies (every section's
// checksum). `skipped` says which newer ones were passed over and why, and which temporaries
// of writers were removed or left (judge_leftover). path is empty when the directory has no
// checkpoint at all (a first start); when it has some and none verifies, that is an error
// naming each. remove_leftovers false (a read-only use such as --eval-only) removes nothing.
struct ResumeChoice {
  std::string path;
  std::vector<std::string> skipped;
};
ResumeChoice choose_checkpoint(const std::string& dir, bool remove_leftovers = true);

// Whether a checkpoint temporary (staging_path) belongs to a writer that is certainly
// gone: its host is this one (by name) and no process has its PID here; or, when the name
// holds no host (older dprun), no process has its PID here and the file is
// kLeftoverAgeSeconds old; or, of another host, the file is that old (a live writer keeps
// writing to it). why says which, for the log.
inline constexpr int kLeftoverAgeSeconds = 600;
struct LeftoverVerdict {
  bool gone = false;
  std::string why;
};
LeftoverVerdict judge_leftover(const std::string& path);

// --keep-checkpoints K after writing the checkpoint of `written_step`: keeps it and the K-1
// newest before it, removes the older ones. Checkpoints of later steps (another history: this
// run was resumed from an earlier file, or they are damaged) are left alone and listed in
// `later`; keep 0 removes nothing. The checkpoint just written is never removed.
struct PruneResult {
  std::vector<std::string> removed;
  std::vector<std::string> later;
};
PruneResult prune_checkpoints(const std::string& dir, size_t keep, uint64_t written_step);

}  // namespace dp
