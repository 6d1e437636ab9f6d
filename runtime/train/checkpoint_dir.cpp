#include "runtime/train/checkpoint_dir.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

#include "runtime/core/atomic_write.h"
#include "runtime/core/error.h"
#include "runtime/core/process_start.h"
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

// Why this host's `pid` cannot be the writer of the temporary `path` although a process has
// that PID: it is this process (which writes no checkpoint while it chooses one to resume), or
// it started after the file was last written. A restarted container's PID namespace hands out
// the same small PIDs: the leftover of the killed job looked live to every restart and was
// kept forever. "" when the PID may be the writer.
std::string reused_pid(long pid, const std::string& path) {
  if (pid == long(::getpid())) {
    return fmt::format(
        "its writer is gone (pid {} is this process: PIDs repeat, e.g. in a restarted "
        "container)",
        pid);
  }
  struct stat st {};
  const double started = process_start_time(pid);
  // One second of slack: the file times and the start time are rounded differently.
  if (started > 0 && ::stat(path.c_str(), &st) == 0 && started > double(st.st_mtime) + 1) {
    return fmt::format(
        "its writer is gone (pid {} on this host started after the file was last written: a "
        "reused PID)",
        pid);
  }
  return "";
}

}  // namespace

bool is_checkpoint_name(const std::string& name) {
  uint64_t step = 0;
  return parse_name(name, step);
}

std::string checkpoint_path(const std::string& dir, uint64_t step) {
  // fs::path joins "ck/" and "ck" alike, so the name matches what listing the directory gives.
  return (fs::path(dir) / fmt::format("step-{:08d}.ckpt", step)).string();
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

LeftoverVerdict judge_leftover(const std::string& path) {
  LeftoverVerdict v;
  CheckpointTempName t;
  if (!parse_checkpoint_temp_name(fs::path(path).filename().string(), t)) {
    v.why = "not a checkpoint temporary of a form dprun writes";
    return v;
  }
  std::error_code ec;
  const auto mtime = fs::last_write_time(path, ec);
  if (ec) {
    v.why = fmt::format("cannot read its time: {}", ec.message());
    return v;
  }
  const double age_s =
      std::chrono::duration<double>(fs::file_time_type::clock::now() - mtime).count();
  const bool old = age_s >= double(kLeftoverAgeSeconds);
  const bool here = !t.host.empty() && t.host == host_tag();
  if (here) {
    const std::string reused = reused_pid(t.pid, path);
    if (!reused.empty()) {
      v.gone = true;
      v.why = reused;
      return v;
    }
  }
  if (here || t.host.empty()) {
    // kill(pid, 0) fails with ESRCH only when no such process exists; EPERM means it exists
    // (another user's): never take a failure for "gone" without ESRCH.
    const bool alive = !(::kill(static_cast<pid_t>(t.pid), 0) == -1 && errno == ESRCH);
    if (alive) {
      v.why = fmt::format("pid {} {} is running: a checkpoint still being written", t.pid,
                          here ? "on this host" : "(here, or on another host)");
      return v;
    }
    // The old name holds no host: the PID may belong to a writer on another host sharing
    // the directory, whose progress only the file's time shows.
    if (here || old) {
      v.gone = true;
      v.why = fmt::format("its writer (pid {}{}) is gone", t.pid, here ? " on this host" : "");
    } else {
      v.why = fmt::format(
          "written {:.0f} s ago by pid {} on an unnamed host (not running here; it may run on "
          "another host): left until it is {} minutes old",
          age_s, t.pid, kLeftoverAgeSeconds / 60);
    }
    return v;
  }
  // Another host's writer: its PID means nothing here. A live writer keeps writing, so a file
  // untouched for that long belongs to a dead (or hopelessly stuck) one.
  if (old) {
    v.gone = true;
    v.why = fmt::format("its writer (pid {} on {}) has not written to it for {:.0f} minutes", t.pid,
                        t.host, age_s / 60);
  } else {
    v.why = fmt::format(
        "written {:.0f} s ago by pid {} on {} (another host: it may still be writing); left "
        "until it is {} minutes old",
        age_s, t.pid, t.host, kLeftoverAgeSeconds / 60);
  }
  return v;
}

ResumeChoice choose_checkpoint(const std::string& dir, bool remove_leftovers) {
  ResumeChoice choice;
  std::error_code ec;
  // Temporary files of CheckpointWriter (".step-N.ckpt.tmp.[HOST.]PID") are never a checkpoint.
  // A killed writer's are removed so that they do not pile up, but only when that writer is
  // certainly gone: removing a live writer's file makes its rename fail and ends its run.
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".step-", 0) != 0 || name.find(".ckpt.tmp.") == std::string::npos) continue;
    const LeftoverVerdict v = judge_leftover(e.path().string());
    std::error_code rm;
    if (v.gone && remove_leftovers && fs::remove(e.path(), rm)) {
      choice.skipped.push_back(
          fmt::format("{}: an incomplete write ({}); removed", e.path().string(), v.why));
    } else if (v.gone && remove_leftovers) {
      choice.skipped.push_back(fmt::format("{}: an incomplete write ({}); cannot remove it: {}",
                                           e.path().string(), v.why, rm.message()));
    } else {
      choice.skipped.push_back(
          fmt::format("{}: an incomplete write ({}); left in place", e.path().string(), v.why));
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
  size_t kept = 1;  // the one just written, whatever else the directory holds
  for (const CheckpointEntry& c : list_checkpoints(dir)) {
    // By step, not by path: "ck/" wrote "ck//step-..." while the listing says "ck/step-...",
    // and the new checkpoint was removed as an old one.
    if (c.step == written_step) continue;
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

}  // namespace dp
