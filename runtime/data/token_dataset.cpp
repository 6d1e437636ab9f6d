#include "runtime/data/token_dataset.h"

#include <utility>

#include <fmt/format.h>

#include "runtime/core/error.h"

namespace dp {

TokenDataset::TokenDataset(std::shared_ptr<const TokenFile> file, size_t context)
    : file_(std::move(file)), context_(context), size_(0) {
  DP_CHECK(file_ != nullptr, "token dataset: no token file");
  DP_CHECK(context_ > 0, "token dataset '{}': the context length must be > 0", file_->path());
  const size_t n = file_->size();
  DP_CHECK(n > context_,
           "token file '{}' holds {} tokens, too few for one window of context {} (needs {} "
           "tokens): use a shorter context or more text",
           file_->path(), n, context_, context_ + 1);
  size_ = (n - 1) / context_;
}

TokenDataset::TokenDataset(const std::string& path, size_t context)
    : TokenDataset(std::make_shared<const TokenFile>(path), context) {}

void TokenDataset::fill(size_t i, void* x, int32_t* y) const {
  DP_CHECK(i < size_, "token dataset '{}': sample {} out of range ({} samples)", file_->path(), i,
           size_);
  const uint16_t* w = file_->tokens() + i * context_;
  int32_t* xi = static_cast<int32_t*>(x);
  for (size_t k = 0; k < context_; ++k) {
    xi[k] = w[k];
    y[k] = w[k + 1];
  }
}

std::string TokenDataset::describe() const {
  return fmt::format("tokens '{}': {} tokens, vocabulary {}, {} windows of {}", file_->path(),
                     file_->size(), file_->vocab_size(), size_, context_);
}

}  // namespace dp
