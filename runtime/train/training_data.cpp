#include "runtime/train/training_data.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "models/registry.h"
#include "runtime/core/error.h"
#include "runtime/data/token_dataset.h"

namespace dp {

DataSplits open_training_data(const TrainConfig& cfg, const ModelEntry& entry,
                              size_t sequence_length) {
  DataOptions data_options;
  data_options.seed = cfg.seed;
  data_options.synthetic_test_size = cfg.synthetic_test_size;
  // A model without a sequence length reads token data as 1-token windows, only for the
  // data-kind check below to refuse it by name.
  data_options.context = sequence_length > 0 ? sequence_length : 1;
  DataSplits data = open_data(cfg.data, cfg.val_data, data_options);
  const std::string kind = data_kind_name(data.train->kind());
  DP_CHECK(
      std::find(entry.data_kinds.begin(), entry.data_kinds.end(), kind) != entry.data_kinds.end(),
      "--model {} trains on {} data, but --data {} is {} data ({})", cfg.model,
      fmt::join(entry.data_kinds, " or "), cfg.data, kind, data.train->describe());
  DP_CHECK(data.test != nullptr || (!cfg.eval && cfg.eval_every == 0),
           "--eval/--eval-every need held-out data: --data {} has no test split (give --val-data "
           "tokens:FILE)",
           cfg.data);
  DP_CHECK(cfg.sample_every == 0 || entry.generate,
           "--sample-every: --model {} does not generate text (a language model such as gpt does)",
           cfg.model);
  return data;
}

void check_samples_for_ranks(const TrainConfig& cfg, const Dataset& train, size_t ranks,
                             const char* ranks_name) {
  const size_t n = train.size();
  if (n >= ranks) return;
  if (const auto* tokens = dynamic_cast<const TokenDataset*>(&train)) {
    const size_t t = tokens->context();
    fail(
        "--data {} holds {} tokens: {} window{} of --context {} + 1, fewer than the {} {} (each "
        "needs at least one window: more tokens, a shorter --context or fewer {})",
        cfg.data, tokens->file().size(), n, n == 1 ? "" : "s", t, ranks, ranks_name, ranks_name);
  }
  fail("--data {} holds {} sample{}, fewer than the {} {} (each needs at least one)", cfg.data, n,
       n == 1 ? "" : "s", ranks, ranks_name);
}

}  // namespace dp
