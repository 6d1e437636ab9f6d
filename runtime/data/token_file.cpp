#include "runtime/data/token_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>

#include "runtime/core/error.h"

// The format is little-endian and the tokens are used in place, straight from the mapping.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "token files are read in place: a big-endian host would need byte swapping");

namespace dp {

namespace {

int32_t le32(const uint8_t* p) {
  return static_cast<int32_t>(uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 |
                              uint32_t(p[3]) << 24);
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

TokenFile::TokenFile(const std::string& path) : path_(path) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  DP_CHECK(f.fd >= 0, "token file '{}': cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  DP_CHECK(::fstat(f.fd, &st) == 0, "token file '{}': cannot stat: {}", path, std::strerror(errno));
  DP_CHECK(S_ISREG(st.st_mode), "token file '{}': not a regular file", path);
  const size_t bytes = static_cast<size_t>(st.st_size);
  DP_CHECK(bytes >= kTokenFileHeaderBytes,
           "token file '{}': byte {}: the file ends inside the {}-byte header (256 int32)", path,
           bytes, kTokenFileHeaderBytes);
  map_ = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    fail("token file '{}': cannot map {} bytes: {}", path, bytes, std::strerror(errno));
  }
  map_bytes_ = bytes;
  // From here on a throw must unmap: the destructor does not run for a failed constructor.
  try {
    const uint8_t* base = static_cast<const uint8_t*>(map_);
    const int32_t magic = le32(base), version = le32(base + 4), count = le32(base + 8),
                  vocab = le32(base + 12);
    DP_CHECK(magic != kLlama3TokenFileMagic,
             "token file '{}': byte 0: magic number {} is llm.c's LLaMA-3 format (version {}, "
             "uint32 tokens), which dprun does not read: it reads llm.c's GPT-2 format (magic "
             "{}, version {}, uint16 tokens), as `dprun prepare-text` writes",
             path, magic, kLlama3TokenFileVersion, kTokenFileMagic, kTokenFileVersion);
    DP_CHECK(magic == kTokenFileMagic,
             "token file '{}': byte 0: bad magic number {} (expected {}: an llm.c token file, "
             "as `dprun prepare-text` writes)",
             path, magic, kTokenFileMagic);
    DP_CHECK(version == kTokenFileVersion,
             "token file '{}': byte 4: unsupported version {} (expected {}: llm.c's GPT-2 format, "
             "uint16 tokens)",
             path, version, kTokenFileVersion);
    DP_CHECK(count >= 0, "token file '{}': byte 8: negative token count {} in the header", path,
             count);
    DP_CHECK(vocab >= 0 && vocab <= 65536,
             "token file '{}': byte 12: vocabulary size {} in header[3] is outside 1..65536 "
             "(uint16 tokens; 0 means GPT-2's {})",
             path, vocab, kGpt2VocabSize);
    const size_t want = kTokenFileHeaderBytes + 2 * static_cast<size_t>(count);
    DP_CHECK(bytes >= want,
             "token file '{}': byte {}: truncated: the header announces {} tokens ({} bytes with "
             "the header), the file has {} bytes ({} tokens)",
             path, bytes, count, want, bytes, (bytes - kTokenFileHeaderBytes) / 2);
    DP_CHECK(bytes == want,
             "token file '{}': byte {}: {} trailing bytes: the header announces {} tokens ({} "
             "bytes with the header), the file has {} bytes",
             path, want, bytes - want, count, want, bytes);
    tokens_ = reinterpret_cast<const uint16_t*>(base + kTokenFileHeaderBytes);
    count_ = static_cast<size_t>(count);
    vocab_from_header_ = vocab != 0;
    vocab_ = vocab != 0 ? vocab : kGpt2VocabSize;
    // The max first (a branch-free loop the compiler vectorises), the position only on error.
    uint16_t mx = 0;
    for (size_t i = 0; i < count_; ++i) mx = std::max(mx, tokens_[i]);
    max_token_ = mx;
    if (mx >= vocab_) {
      const size_t at = static_cast<size_t>(
          std::find_if(tokens_, tokens_ + count_, [&](uint16_t t) { return t >= vocab_; }) -
          tokens_);
      fail(
          "token file '{}': byte {}: token {} at position {} is outside the vocabulary (size {}{})",
          path, kTokenFileHeaderBytes + 2 * at, tokens_[at], at, vocab_,
          vocab_from_header_ ? "" : ", GPT-2's, as header[3] is 0");
    }
  } catch (...) {
    release();
    throw;
  }
}

TokenFile::~TokenFile() {
  release();
}

TokenFile::TokenFile(TokenFile&& o) noexcept
    : path_(std::move(o.path_)),
      map_(std::exchange(o.map_, nullptr)),
      map_bytes_(std::exchange(o.map_bytes_, 0)),
      tokens_(std::exchange(o.tokens_, nullptr)),
      count_(std::exchange(o.count_, 0)),
      vocab_(o.vocab_),
      vocab_from_header_(o.vocab_from_header_),
      max_token_(o.max_token_) {}

TokenFile& TokenFile::operator=(TokenFile&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    map_ = std::exchange(o.map_, nullptr);
    map_bytes_ = std::exchange(o.map_bytes_, 0);
    tokens_ = std::exchange(o.tokens_, nullptr);
    count_ = std::exchange(o.count_, 0);
    vocab_ = o.vocab_;
    vocab_from_header_ = o.vocab_from_header_;
    max_token_ = o.max_token_;
  }
  return *this;
}

void TokenFile::release() {
  if (map_) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
  tokens_ = nullptr;
  count_ = 0;
}

std::string token_file_staging_path(const std::string& path) {
  return path + ".tmp";
}

void stage_token_file(const std::string& path, const uint16_t* tokens, size_t count,
                      int vocab_size) {
  DP_CHECK(vocab_size >= 1 && vocab_size <= 65536,
           "write_token_file '{}': vocabulary size {} is outside 1..65536 (uint16 tokens)", path,
           vocab_size);
  DP_CHECK(count <= static_cast<size_t>(std::numeric_limits<int32_t>::max()),
           "write_token_file '{}': {} tokens do not fit the header's int32 count", path, count);
  for (size_t i = 0; i < count; ++i) {
    DP_CHECK(tokens[i] < vocab_size,
             "write_token_file '{}': token {} at position {} is outside the vocabulary (size {})",
             path, tokens[i], i, vocab_size);
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    DP_CHECK(S_ISREG(st.st_mode),
             "cannot write token file '{}': it exists and is not a regular file", path);
  }
  int32_t header[kTokenFileHeaderInts] = {};
  header[0] = kTokenFileMagic;
  header[1] = kTokenFileVersion;
  header[2] = static_cast<int32_t>(count);
  header[3] = vocab_size;
  const std::string tmp = token_file_staging_path(path);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  DP_CHECK(f != nullptr, "cannot write token file '{}': cannot create '{}': {}", path, tmp,
           std::strerror(errno));
  bool ok = std::fwrite(header, sizeof(header), 1, f) == 1 &&
            (count == 0 || std::fwrite(tokens, 2, count, f) == count);
  int err = ok ? 0 : errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    fail("cannot write token file '{}': writing '{}' failed: {} (disk full?)", path, tmp,
         std::strerror(err));
  }
}

void commit_token_file(const std::string& path) {
  const std::string tmp = token_file_staging_path(path);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fail("cannot write token file '{}': renaming '{}' onto it failed: {}", path, tmp,
         std::strerror(err));
  }
}

void discard_staged_token_file(const std::string& path) {
  std::remove(token_file_staging_path(path).c_str());
}

void write_token_file(const std::string& path, const uint16_t* tokens, size_t count,
                      int vocab_size) {
  stage_token_file(path, tokens, count, vocab_size);
  commit_token_file(path);
}

}  // namespace dp
