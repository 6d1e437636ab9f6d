#pragma once
// Token files in llm.c's format (karpathy/llm.c, dev/data/data_common.py): a header of 256
// little-endian int32, then the tokens as little-endian uint16.
//   header[0] = 20240520 (magic), header[1] = 1 (version: uint16 tokens),
//   header[2] = number of tokens, header[3..255] = 0 in llm.c's files.
// dprun's writer also stores the vocabulary size in header[3]; a file with header[3] == 0
// (llm.c's) is taken to hold GPT-2 tokens, vocabulary 50257. Readers that ignore header[3]
// (llm.c itself) read dprun's files unchanged.
//
// The reader keeps the file open and reads each window with pread when a batch is filled (as
// llm.c's data loader freads): a large corpus costs neither memory nor address space, the page
// cache is shared by every rank of a node, and a file truncated under a running job is a
// dp::Error naming it, where a memory mapping died of SIGBUS. Opening scans every token once
// (a streamed pass, about a second for billions of tokens) so that a token outside the
// vocabulary is an error at start, naming its position, never an out-of-range embedding row in
// the middle of training.
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/core/atomic_write.h"

namespace dp {

constexpr int32_t kTokenFileMagic = 20240520;
constexpr int32_t kTokenFileVersion = 1;
// llm.c's LLaMA-3 token files (magic 20240801, version 7, uint32 tokens): recognised only to
// say so by name, not read.
constexpr int32_t kLlama3TokenFileMagic = 20240801;
constexpr int32_t kLlama3TokenFileVersion = 7;
constexpr size_t kTokenFileHeaderInts = 256;
constexpr size_t kTokenFileHeaderBytes = kTokenFileHeaderInts * 4;
constexpr int kGpt2VocabSize = 50257;  // assumed when header[3] is 0

class TokenFile {
 public:
  // Opens and validates `path`. Throws dp::Error naming the file when it is missing or
  // unreadable, shorter than the header, has a bad magic or version (llm.c's LLaMA-3 format
  // named as such), a vocabulary size
  // outside 1..65536, a token count that does not match the file size (truncated, or bytes
  // after the last token), or a token >= the vocabulary size (naming its position).
  explicit TokenFile(const std::string& path);
  ~TokenFile();
  TokenFile(TokenFile&& other) noexcept;
  TokenFile& operator=(TokenFile&& other) noexcept;
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  const std::string& path() const { return path_; }
  size_t size() const { return count_; }
  // Copies tokens [first, first + n) to `out`; allocates nothing and may be called from several
  // threads at once. Throws dp::Error naming the file when the range is outside the file's
  // tokens, or the file no longer holds them (it was truncated after it was opened).
  void read(size_t first, size_t n, uint16_t* out) const;
  int vocab_size() const { return vocab_; }
  // True when header[3] held it, false when GPT-2's was assumed.
  bool vocab_from_header() const { return vocab_from_header_; }
  // The largest token in the file (0 for an empty file).
  uint16_t max_token() const { return max_token_; }

 private:
  void release();

  std::string path_;
  int fd_ = -1;
  size_t file_bytes_ = 0;  // when opened: a shorter file was truncated under the run
  size_t count_ = 0;
  int vocab_ = 0;
  bool vocab_from_header_ = false;
  uint16_t max_token_ = 0;
};

// Writes `count` tokens to `path` in the format above, with vocab_size in header[3], through
// write_file_atomically (runtime/core/atomic_write.h): a reader never sees a half-written
// file, and an existing `path` that is not a regular file is refused. Throws dp::Error naming
// the file when a token is >= vocab_size, vocab_size is outside 1..65536, count exceeds what
// header[2] (int32) can hold, or the write fails.
void write_token_file(const std::string& path, const uint16_t* tokens, size_t count,
                      int vocab_size);

// write_token_file's first half, for writers of several files that must change all of them or
// none: the staged file, named in errors by `option`, replaces `path` on commit().
StagedFile stage_token_file(const std::string& option, const std::string& path,
                            const uint16_t* tokens, size_t count, int vocab_size);

}  // namespace dp
