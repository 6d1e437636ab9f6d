#pragma once
// Next-token prediction windows over a token file, as llm.c's data loader cuts them: sample
// i is the context + 1 tokens starting at i * context; its input is the first context
// tokens, its targets the last context (each position's next token). Consecutive windows
// share one token, so every token but the very first is a target exactly once per epoch,
// up to the last whole window: the (tokens - 1) mod context tokens after it are not used.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/data/dataset.h"
#include "runtime/data/token_file.h"

namespace dp {

class TokenDataset : public Dataset {
 public:
  // size() = (tokens - 1) / context; throws dp::Error naming the file when context is 0 or
  // the file holds fewer than context + 1 tokens (not even one window).
  TokenDataset(std::shared_ptr<const TokenFile> file, size_t context);
  // Opens `path` (see TokenFile for its checks).
  TokenDataset(const std::string& path, size_t context);

  size_t size() const override { return size_; }
  DataKind kind() const override { return DataKind::tokens; }
  Shape sample_shape() const override { return {static_cast<int64_t>(context_)}; }
  size_t sample_numel() const override { return context_; }
  DType input_dtype() const override { return DType::i32; }
  size_t target_numel() const override { return context_; }
  int num_classes() const override { return file_->vocab_size(); }
  // x: int32 tokens[i*T, i*T + T), y: tokens[i*T + 1, i*T + T + 1).
  void fill(size_t i, void* x, int32_t* y) const override;
  std::string describe() const override;

  size_t context() const { return context_; }
  const TokenFile& file() const { return *file_; }

 private:
  std::shared_ptr<const TokenFile> file_;
  size_t context_;
  size_t size_;
};

}  // namespace dp
