#include "runtime/train/config_check.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "models/registry.h"
#include "runtime/comm/gather_strings.h"
#include "runtime/core/error.h"
#include "runtime/core/version.h"
#include "runtime/data/dataset.h"

namespace dp {

std::string data_fingerprint(const Dataset& d) {
  // CRC32 over the inputs and targets of up to 16 samples spread over the set: equal sizes
  // and shapes from different data (another data set, another normalisation, another token
  // file of the same length) differ here, at the cost of reading 16 samples.
  const size_t n = d.size(), picks = std::min<size_t>(16, n);
  std::vector<unsigned char> x(d.sample_numel() * dtype_size(d.input_dtype()));
  std::vector<int32_t> y(d.target_numel());
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t k = 0; k < picks; ++k) {
    const size_t i = picks > 1 ? k * (n - 1) / (picks - 1) : 0;
    d.fill(i, x.data(), y.data());
    crc = crc32(crc, x.data(), static_cast<uInt>(x.size()));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(y.data()),
                static_cast<uInt>(y.size() * sizeof(int32_t)));
  }
  return fmt::format("{:08x}", static_cast<uint32_t>(crc));
}

std::string token_data_setting(const std::string& windows, const std::string& context,
                               const std::string& dtype, const std::string& vocab) {
  return fmt::format("{} windows of {} tokens ({}), vocabulary {}", windows, context, dtype, vocab);
}

namespace {

// What the data is, in its kind's words: token data is cut into windows, and its size counts
// them, not tokens.
std::string data_setting(const Dataset& d) {
  if (d.kind() == DataKind::tokens)
    return token_data_setting(std::to_string(d.size()), std::to_string(d.sample_numel()),
                              dtype_name(d.input_dtype()), std::to_string(d.num_classes()));
  return fmt::format("{} {} samples of shape [{}] ({}), {} classes", d.size(),
                     data_kind_name(d.kind()), fmt::join(d.sample_shape(), ", "),
                     dtype_name(d.input_dtype()), d.num_classes());
}

}  // namespace

std::vector<std::pair<std::string, std::string>> collective_settings(const TrainConfig& c,
                                                                     const Dataset& train,
                                                                     const Dataset* test) {
  auto b = [](bool v) { return std::string(v ? "on" : "off"); };
  auto s = [](auto v) { return fmt::format("{}", v); };
  std::vector<std::pair<std::string, std::string>> out = {
      // First: two versions' settings may not even line up, and their maths may differ.
      {"dprun version", dprun_version()},
      {"--model", c.model},
      {"training data", data_setting(train)},
      {"training data content (CRC32 of 16 samples)", data_fingerprint(train)},
      {"test data", test ? fmt::format("{} {}", test->size(),
                                       test->kind() == DataKind::tokens ? "windows" : "samples")
                         : "none"},
      {"test data content (CRC32 of 16 samples)", test ? data_fingerprint(*test) : "none"},
      {"--epochs", s(c.epochs)},
      {"--steps", s(c.max_steps)},
      {"--batch-size", s(c.batch_size)},
      {"--grad-accum", s(c.grad_accum)},
      {"--seed", s(c.seed)},
      {"--precision", c.precision},
      {"--comm-hook", c.comm_hook},
      {"--allreduce-algo", c.allreduce_algo},
      {"--optimizer", c.optimizer},
      {"--lr", s(c.lr)},
      {"--momentum", s(c.momentum)},
      {"--nesterov", b(c.nesterov)},
      {"--weight-decay", s(c.weight_decay)},
      {"--weight-decay-1d", b(c.weight_decay_1d)},
      {"--beta1", s(c.beta1)},
      {"--beta2", s(c.beta2)},
      {"--adam-eps", s(c.adam_eps)},
      {"--lr-schedule", c.lr_schedule},
      {"--warmup-steps", s(c.warmup_steps)},
      {"--min-lr", s(c.min_lr)},
      {"--clip-grad-norm", s(c.clip_grad_norm)},
      {"--no-param-arena", b(!c.param_arena)},  // the buckets' sizes (arena padding) differ
      {"--first-bucket-mb", c.first_bucket_auto ? "auto" : s(c.first_bucket_mb)},
      {"--bucket-cap-mb", c.bucket_cap_auto ? "auto" : s(c.bucket_cap_mb)},
      {"--no-overlap", b(!c.overlap)},
      {"--no-shm", b(!c.shared_memory)},
      {"--find-unused-parameters", b(c.find_unused_parameters)},
      {"--eval", b(c.eval)},
      {"--eval-every", s(c.eval_every)},
      {"--eval-batches", s(c.eval_batches)},
      {"--eval-batch-size", s(c.eval_batch_size)},
      // Every rank samples, so that none waits for rank 0's text in its next collective: a
      // rank sampling longer than another timed the job out instead of naming the option.
      {"--sample-every", s(c.sample_every)},
      {"--sample-length", s(c.sample_length)},
      {"--sample-temperature", s(c.sample_temperature)},
      {"--sample-top-k", s(c.sample_top_k)},
      {"--no-broadcast-buffers", b(!c.broadcast_buffers)},
      {"--sync-batchnorm", b(c.sync_batchnorm)},
      {"--trace", b(!c.trace.empty())},  // collectives: its clock origin, its write at step 20
      {"--profile-out", b(!c.profile_out.empty())},  // measures the all-reduce collectively
      // Checkpoints and resuming add collectives (the ranks agree on each checkpoint and on
      // the resume verdict); only rank 0 touches the files, so the paths may differ.
      {"--checkpoint-dir", b(!c.checkpoint_dir.empty())},
      {"--checkpoint-every", s(c.checkpoint_every)},
      {"--resume", b(!c.resume.empty())},
      {"--eval-only", b(c.eval_only)},
      // A rank that aborts on a non-finite gradient while another skips the step would leave
      // the other waiting for its next collective.
      {"--on-nonfinite", c.on_nonfinite},
  };
  // The model's own options as they resolve (given, preset or default): the same count on
  // every rank whatever each was given.
  const ModelEntry& entry = find_model(c.model);
  const ModelArgs args = make_model_args(entry, c.model_options, {}, c.seed);
  for (const ModelOption& o : entry.options) {
    // A preset is a name for values compared here one by one: the same model given by
    // --preset on one side and by its options on the other is the same model.
    if (o.name == "preset") continue;
    out.emplace_back("--" + o.name, args.get_string(o.name));
  }
  return out;
}

std::string describe_settings_mismatch(const std::vector<std::vector<std::string>>& per_rank) {
  const auto& ref = per_rank.at(0);
  for (size_t r = 1; r < per_rank.size(); ++r) {
    for (size_t i = 0; i < ref.size() && i < per_rank[r].size(); ++i) {
      if (ref[i] == per_rank[r][i]) continue;
      // Lines are "name\tvalue"; "" is an option not given (a model's data-derived default).
      const std::string name = ref[i].substr(0, ref[i].find('\t'));
      auto value = [](const std::string& line) {
        const std::string v = line.substr(line.find('\t') + 1);
        return v.empty() ? std::string("not given") : "'" + v + "'";
      };
      return fmt::format(
          "the ranks were started with different settings: {} is {} on rank 0 but {} on "
          "rank {}; every rank must run with the same options and equivalent data",
          name, value(ref[i]), value(per_rank[r][i]), r);
    }
    if (ref.size() != per_rank[r].size()) {
      return fmt::format("rank 0 and rank {} run different versions of dprun ({} vs {} settings)",
                         r, ref.size(), per_rank[r].size());
    }
  }
  return "";
}

void verify_settings_match(const std::vector<std::pair<std::string, std::string>>& settings,
                           ProcessGroup& pg, std::chrono::milliseconds timeout) {
  std::vector<std::string> mine;
  mine.reserve(settings.size());
  for (const auto& [name, value] : settings) mine.push_back(fmt::format("{}\t{}", name, value));
  auto per_rank = allgather_lines(pg, mine, timeout, "settings check");
  std::string mismatch = describe_settings_mismatch(per_rank);
  if (!mismatch.empty()) throw CollectiveError(mismatch);
}

}  // namespace dp
