#include "runtime/train/resume_check.h"

#include <algorithm>
#include <map>
#include <regex>

#include <fmt/format.h>

#include "runtime/core/version.h"
#include "runtime/train/config_check.h"

namespace dp {

namespace {

bool among(const std::string& key, std::initializer_list<const char*> keys) {
  return std::any_of(keys.begin(), keys.end(), [&](const char* k) { return key == k; });
}

// A model option left to its default (the data's vocabulary, no preset) is recorded as "";
// a message must still show a value.
std::string shown(const std::string& value) {
  return value.empty() ? "(not given)" : value;
}

// Checkpoints written before dprun counted token data in windows recorded it as "572 tokens
// samples of shape [32] (int32), 257 classes": the same data as token_data_setting's words.
std::string in_current_words(const std::string& key, const std::string& saved) {
  static const std::regex kTokensBefore(
      R"((\d+) tokens samples of shape \[(\d+)\] \((\w+)\), (\d+) classes)");
  std::smatch m;
  if (key != "training data" || !std::regex_match(saved, m, kTokensBefore)) return saved;
  return token_data_setting(m[1].str(), m[2].str(), m[3].str(), m[4].str());
}

}  // namespace

ResumeVerdict check_resume(const CheckpointMeta& meta, const ResumeTarget& t,
                           const std::string& path) {
  ResumeVerdict v;
  std::map<std::string, std::string> saved(meta.settings.begin(), meta.settings.end());
  auto saved_value = [&](const std::string& key) {
    // Settings added after checkpoints were first written: an older checkpoint trained as the
    // setting's value that reproduces the old behaviour (--weight-decay-1d: decay on every
    // parameter).
    static const std::map<std::string, std::string> kBeforeTheSetting = {
        {"--weight-decay-1d", "on"}, {"--no-shm", "off"}, {"--no-param-arena", "on"}};
    if (auto it = saved.find(key); it != saved.end()) return in_current_words(key, it->second);
    if (auto it = kBeforeTheSetting.find(key); it != kBeforeTheSetting.end()) return it->second;
    return std::string("(not recorded)");
  };
  // Evaluation and sampling need only the same model: its options change the math even where
  // they do not change a parameter's shape (the number of heads).
  for (const auto& [key, value] : t.settings) {
    const bool model_key =
        std::find(t.model_keys.begin(), t.model_keys.end(), key) != t.model_keys.end();
    if (t.eval_only && !model_key) continue;
    // Evaluation and sampling settings, the trace, the held-out data: they do not change the
    // training.
    if (among(key, {"--eval", "--eval-every", "--eval-batches", "--eval-batch-size", "--trace",
                    "test data", "test data content (CRC32 of 16 samples)", "--sample-every",
                    "--sample-length", "--sample-temperature", "--sample-top-k"}))
      continue;
    // How the run is driven, not what it computes (and not recorded by older checkpoints).
    // --profile-out only measures (the buckets change with auto sizing, checked as such);
    // --find-unused-parameters lets a run go on where it would stop, never changes a sum.
    if (among(key, {"--checkpoint-dir", "--checkpoint-every", "--resume", "--eval-only",
                    "--on-nonfinite", "--profile-out", "--find-unused-parameters"}))
      continue;
    // Checked below, together. The version is the checkpoint's own field (older checkpoints
    // have no such setting): another version resumes, said aloud.
    if (among(key, {"--batch-size", "--grad-accum", "dprun version"})) continue;
    const std::string before = saved_value(key);
    if (before == value) continue;
    // --min-lr has no effect under --lr-schedule constant, where older dprun recorded it too
    // (this one refuses the pair): the checkpoint's value there is no setting, and comparing it
    // asked for a value that can no longer be given.
    if (key == "--min-lr" && saved_value("--lr-schedule") == "constant") continue;
    if (among(key, {"--epochs", "--steps"})) {
      v.notes.push_back(fmt::format(
          "{} was {} when the checkpoint was written, now {}: the run's length changes{}", key,
          before, value,
          saved_value("--lr-schedule") == "cosine"
              ? ", and with it the cosine schedule (the learning rate of the remaining steps)"
              : ""));
      continue;
    }
    // The arena pads each parameter's range within its bucket: other bucket boundaries.
    // Checkpoints written before it existed do not record it (they had none).
    if (among(key, {"--first-bucket-mb", "--bucket-cap-mb", "--no-overlap", "--no-param-arena"})) {
      v.notes.push_back(
          fmt::format("{} was {}, now {}: other buckets (with more than 2 ranks the sums may round "
                      "differently from an uninterrupted run)",
                      key, before, value));
      continue;
    }
    if (among(key, {"--no-shm", "--allreduce-algo"})) {
      v.notes.push_back(
          fmt::format("{} was {}, now {}: the all-reduce takes another path (with more than 2 "
                      "ranks the sums may round differently from an uninterrupted run)",
                      key, before, value));
      continue;
    }
    v.error = fmt::format(
        "--resume {}: the checkpoint was written with {} {}, this run has {} {}: resuming would "
        "silently change the training (start it with the checkpoint's settings, or start afresh "
        "without --resume)",
        path, key, shown(before), key, shown(value));
    return v;
  }
  if (!meta.dprun_version.empty() && meta.dprun_version != dprun_version()) {
    v.notes.push_back(fmt::format(
        "the checkpoint was written by dprun {}, this is dprun {}: a change in between may "
        "change the results",
        meta.dprun_version, dprun_version()));
  }
  if (t.eval_only) return v;
  const size_t global = t.batch_size * t.grad_accum * size_t(t.world_size);
  if (global != meta.global_batch()) {
    v.error = fmt::format(
        "--resume {}: the checkpoint was written by {} rank(s) x batch {} x accumulation {} = "
        "global batch {}; this run has {} rank(s) x {} x {} = {}. Keep the global batch "
        "(--batch-size and --grad-accum with ranks x batch x accumulation = {}) or resume on {} "
        "rank(s)",
        path, meta.world_size, meta.batch_size, meta.grad_accum, meta.global_batch(), t.world_size,
        t.batch_size, t.grad_accum, global, meta.global_batch(), meta.world_size);
    return v;
  }
  if (t.steps_per_epoch != meta.steps_per_epoch) {
    v.error = fmt::format(
        "--resume {}: an epoch had {} steps when the checkpoint was written ({} rank(s) x batch "
        "{} x accumulation {}), this run's has {} ({} x {} x {}): the epoch boundaries would "
        "move; resume on {} rank(s) with --batch-size {} --grad-accum {}",
        path, meta.steps_per_epoch, meta.world_size, meta.batch_size, meta.grad_accum,
        t.steps_per_epoch, t.world_size, t.batch_size, t.grad_accum, meta.world_size,
        meta.batch_size, meta.grad_accum);
    return v;
  }
  if (t.world_size != meta.world_size || t.batch_size != meta.batch_size) {
    // --sync-batchnorm is a compared setting: the checkpoint's is this run's.
    auto group = [&](int world, size_t batch) {
      return t.sync_batchnorm ? size_t(world) * batch : batch;
    };
    const size_t was = group(meta.world_size, meta.batch_size),
                 now = group(t.world_size, t.batch_size);
    std::string what = "summed in another order, so not bit-identical to an uninterrupted run";
    if (t.batchnorm) {
      what = fmt::format(
          "but BatchNorm normalises over {} of {} sample(s) (it was {}{}): not the same "
          "training as an uninterrupted run",
          t.sync_batchnorm ? "the ranks' micro-batches together, groups"
                           : "each rank's micro-batch,",
          now, was, now == was ? ", other samples grouped" : "");
    }
    v.notes.push_back(fmt::format(
        "the checkpoint was written by {} rank(s) x batch {} x accumulation {}, this run has {} x "
        "{} x {}: the same global batch of {} (the same samples in every step, but for an epoch's "
        "last when the data does not split evenly: each epoch is padded to a multiple of the "
        "ranks), {}",
        meta.world_size, meta.batch_size, meta.grad_accum, t.world_size, t.batch_size, t.grad_accum,
        global, what));
  }
  auto current = [&](const std::string& key) {
    for (const auto& [k, value] : t.settings)
      if (k == key) return value;
    return std::string("(not recorded)");
  };
  v.same_layout = t.world_size == meta.world_size &&
                  current("--first-bucket-mb") == saved_value("--first-bucket-mb") &&
                  current("--bucket-cap-mb") == saved_value("--bucket-cap-mb");
  return v;
}

}  // namespace dp
