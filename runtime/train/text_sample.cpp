#include "runtime/train/text_sample.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "models/registry.h"
#include "runtime/core/error.h"
#include "runtime/data/byte_tokenizer.h"
#include "runtime/nn/module.h"

namespace dp {

std::string sample_text(const ModelEntry& entry, Module& model, int vocab, const TrainConfig& cfg,
                        uint64_t step) {
  DP_CHECK(entry.generate, "--model {} does not generate text", cfg.model);
  const bool bytes = vocab == ByteTokenizer::kVocabSize;
  const int32_t start = bytes ? ByteTokenizer::kEndOfText : std::min(50256, vocab - 1);
  std::vector<int32_t> out = entry.generate(
      model, {start}, cfg.sample_length, cfg.sample_temperature, cfg.sample_top_k, cfg.seed + step);
  model.train();
  if (bytes) return ByteTokenizer::printable(ByteTokenizer::decode(out.data(), out.size(), "\n"));
  return fmt::format("{}", fmt::join(out, " "));
}

}  // namespace dp
