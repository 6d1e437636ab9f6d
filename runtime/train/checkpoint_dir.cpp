#include "runtime/train/checkpoint_dir.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "runtime/core/error.h"
#include "runtime/core/log.h"
#include "runtime/train/checkpoint_file.h"

namespace dp {

namespace fs = std::filesystem;

namespace {

// "step-<digits>.ckpt" -> the step; false for anything else.
bool parse_name(const std::string& name, uint64_t& step) {
  const std::string prefix = "step-", suffix = ".ckpt";
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  const std::string digits =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() > 19 || digits.find_first_not_of("0123456789") != std::string::npos)
    return false;
  step = std::stoull(digits);
  return true;
}

}  // namespace

std::string checkpoint_path(const std::string& dir, uint64_t step) {
  return fmt::format("{}/step-{:08d}.ckpt", dir, step);
}

std::vector<CheckpointEntry> list_checkpoints(const std::string& dir) {
  std::error_code ec;
  DP_CHECK(fs::is_directory(dir, ec), "--checkpoint-dir {}: not a directory", dir);
  std::vector<CheckpointEntry> out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    CheckpointEntry c;
    if (parse_name(e.path().filename().string(), c.step)) {
      c.path = e.path().string();
      out.push_back(std::move(c));
    }
  }
  DP_CHECK(!ec, "--checkpoint-dir {}: cannot list it: {}", dir, ec.message());
  std::sort(out.begin(), out.end(),
            [](const CheckpointEntry& a, const CheckpointEntry& b) { return a.step > b.step; });
  return out;
}

ResumeChoice choose_checkpoint(const std::string& dir) {
  ResumeChoice choice;
  std::error_code ec;
  // Temporary files of writers killed mid-write (CheckpointWriter names them
  // ".step-N.ckpt.tmp.PID"): never a checkpoint, removed so that they do not pile up.
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".step-", 0) == 0 && name.find(".ckpt.tmp.") != std::string::npos) {
      fs::remove(e.path(), ec);
      choice.skipped.push_back(fmt::format(
          "{}: an incomplete write (its writer was killed); removed", e.path().string()));
    }
  }
  for (const CheckpointEntry& c : list_checkpoints(dir)) {
    try {
      CheckpointReader reader(c.path);
      reader.verify();
      choice.path = c.path;
      return choice;
    } catch (const Error& e) {
      choice.skipped.push_back(e.what());
    }
  }
  if (!choice.skipped.empty() && !list_checkpoints(dir).empty()) {
    std::string why;
    for (const std::string& s : choice.skipped) why += "\n  " + s;
    fail("--resume auto: no checkpoint in {} verifies:{}", dir, why);
  }
  return choice;
}

PruneResult prune_checkpoints(const std::string& dir, size_t keep, uint64_t written_step) {
  PruneResult r;
  if (keep == 0) return r;
  const std::string written = checkpoint_path(dir, written_step);
  size_t kept = 1;  // the one just written, whatever else the directory holds
  for (const CheckpointEntry& c : list_checkpoints(dir)) {
    if (c.path == written) continue;
    // A later step than the one just written is not this run's past: a checkpoint of the
    // history this run was resumed away from (--resume FILE), or a damaged one that
    // --resume auto passed over. Removing by step alone took the new checkpoint first.
    if (c.step > written_step) {
      r.later.push_back(c.path);
      continue;
    }
    if (kept < keep) {
      ++kept;
      continue;
    }
    std::error_code ec;
    if (fs::remove(c.path, ec)) r.removed.push_back(c.path);
  }
  return r;
}

namespace {

std::mutex g_written_mutex;
std::string g_last_written;  // by this process (note_checkpoint_written)
std::set<std::string> g_warned_later;

}  // namespace

void note_checkpoint_written(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_written_mutex);
  g_last_written = path;
}

std::vector<std::string> prune_checkpoints(const std::string& dir, size_t keep) {
  if (keep == 0) return {};
  std::string last;
  {
    std::lock_guard<std::mutex> lock(g_written_mutex);
    last = g_last_written;
  }
  uint64_t step = 0;
  std::error_code ec;
  // Without a checkpoint of its own in `dir` this process has no place in its history to
  // prune from: it removes nothing rather than guess.
  if (last.empty() || !parse_name(fs::path(last).filename().string(), step) ||
      !fs::equivalent(
          fs::path(last).parent_path().empty() ? fs::path(".") : fs::path(last).parent_path(), dir,
          ec))
    return {};
  PruneResult r = prune_checkpoints(dir, keep, step);
  if (!r.later.empty()) {
    std::lock_guard<std::mutex> lock(g_written_mutex);
    if (g_warned_later.insert(dir).second)
      log::warn(
          "--keep-checkpoints: {} holds {} checkpoint(s) of later steps than this run's step "
          "{} ({}{}): not this run's history (an earlier --resume FILE, or damaged ones "
          "--resume auto passed over); left in place and not counted. --resume auto takes "
          "the newest that verifies: remove them if this run is the one to continue",
          dir, r.later.size(), step, r.later.front(), r.later.size() > 1 ? ", ..." : "");
  }
  return r.removed;
}

}  // namespace dp
