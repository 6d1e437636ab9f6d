#include "runtime/data/token_dataset.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

#include "runtime/core/error.h"
#include "samplers/distributed_sampler.h"

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
  DP_CHECK(size_ <= kMaxSamplerSize,
           "token file '{}' holds {} tokens: at context {} that is {} windows, more than the {} "
           "a rank can index; use a longer --context (at least {})",
           file_->path(), n, context_, size_, kMaxSamplerSize, (n - 1) / (kMaxSamplerSize + 1) + 1);
}

TokenDataset::TokenDataset(const std::string& path, size_t context)
    : TokenDataset(std::make_shared<const TokenFile>(path), context) {}

void TokenDataset::fill(size_t i, void* x, int32_t* y) const {
  DP_CHECK(i < size_, "token dataset '{}': sample {} out of range ({} samples)", file_->path(), i,
           size_);
  // The window's context + 1 tokens, read a stack buffer at a time: no allocation per sample,
  // and one read for contexts up to kChunk - 1.
  constexpr size_t kChunk = 2048;
  uint16_t w[kChunk];
  int32_t* xi = static_cast<int32_t*>(x);
  const size_t first = i * context_, n = context_ + 1;
  for (size_t done = 0; done < n; done += kChunk) {
    const size_t m = std::min(kChunk, n - done);
    file_->read(first + done, m, w);
    // Window position p is input p (p < context) and the target of position p - 1 (p > 0).
    for (size_t k = 0; k < m; ++k) {
      const size_t p = done + k;
      if (p < context_) xi[p] = w[k];
      if (p > 0) y[p - 1] = w[k];
    }
  }
}

std::string TokenDataset::describe() const {
  return fmt::format("tokens '{}': {} tokens, vocabulary {}, {} windows of {}", file_->path(),
                     file_->size(), file_->vocab_size(), size_, context_);
}

}  // namespace dp
