#include "runtime/train/checkpoint_dir.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

#include "runtime/core/error.h"
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

std::vector<std::string> prune_checkpoints(const std::string& dir, size_t keep) {
  std::vector<std::string> removed;
  if (keep == 0) return removed;
  const std::vector<CheckpointEntry> all = list_checkpoints(dir);
  for (size_t i = keep; i < all.size(); ++i) {
    std::error_code ec;
    if (fs::remove(all[i].path, ec)) removed.push_back(all[i].path);
  }
  return removed;
}

}  // namespace dp
