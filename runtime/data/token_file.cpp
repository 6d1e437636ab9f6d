#include "runtime/data/token_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "runtime/core/atomic_write.h"
#include "runtime/core/error.h"

// The format is little-endian and the tokens are copied as they are.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "token files are read as they are: a big-endian host would need byte swapping");

namespace dp {

namespace {

int32_t le32(const uint8_t* p) {
  return static_cast<int32_t>(uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 |
                              uint32_t(p[3]) << 24);
}

// `bytes` bytes at `offset` of the file, which had `file_bytes` bytes when it was opened.
void read_at(int fd, const std::string& path, size_t file_bytes, void* out, size_t bytes,
             size_t offset) {
  char* dst = static_cast<char*>(out);
  while (bytes > 0) {
    const ssize_t got = ::pread(fd, dst, bytes, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    DP_CHECK(got >= 0, "token file '{}': byte {}: cannot read: {}", path, offset,
             std::strerror(errno));
    if (got == 0) {
      struct stat st {};
      const long long now = ::fstat(fd, &st) == 0 ? static_cast<long long>(st.st_size) : -1;
      fail(
          "token file '{}': byte {}: cannot read: the file has {} bytes, it had {} when it was "
          "opened: it was truncated while dprun read it (to change a token file under a "
          "running job, write a new file and rename it over the old one, as `dprun "
          "prepare-text` does)",
          path, offset, now, file_bytes);
    }
    dst += got;
    offset += static_cast<size_t>(got);
    bytes -= static_cast<size_t>(got);
  }
}

}  // namespace

TokenFile::TokenFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  DP_CHECK(fd_ >= 0, "token file '{}': cannot open: {}", path, std::strerror(errno));
  // From here on a throw must close: the destructor does not run for a failed constructor.
  try {
    struct stat st {};
    DP_CHECK(::fstat(fd_, &st) == 0, "token file '{}': cannot stat: {}", path,
             std::strerror(errno));
    DP_CHECK(S_ISREG(st.st_mode), "token file '{}': not a regular file", path);
    const size_t bytes = static_cast<size_t>(st.st_size);
    file_bytes_ = bytes;
    DP_CHECK(bytes >= kTokenFileHeaderBytes,
             "token file '{}': byte {}: the file ends inside the {}-byte header (256 int32)", path,
             bytes, kTokenFileHeaderBytes);
    uint8_t base[16];
    read_at(fd_, path, bytes, base, sizeof(base), 0);
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
    count_ = static_cast<size_t>(count);
    vocab_from_header_ = vocab != 0;
    vocab_ = vocab != 0 ? vocab : kGpt2VocabSize;
    // Streamed in chunks; per chunk the max first (a branch-free loop the compiler vectorises),
    // the position only on error.
    std::vector<uint16_t> chunk(std::min<size_t>(count_, size_t{1} << 16));
    uint16_t mx = 0;
    for (size_t first = 0; first < count_; first += chunk.size()) {
      const size_t n = std::min(chunk.size(), count_ - first);
      read(first, n, chunk.data());
      uint16_t cmx = 0;
      for (size_t i = 0; i < n; ++i) cmx = std::max(cmx, chunk[i]);
      mx = std::max(mx, cmx);
      if (cmx < vocab_) continue;
      const uint16_t* c = chunk.data();
      const size_t at =
          first + size_t(std::find_if(c, c + n, [&](uint16_t t) { return t >= vocab_; }) - c);
      fail(
          "token file '{}': byte {}: token {} at position {} is outside the vocabulary (size {}{})",
          path, kTokenFileHeaderBytes + 2 * at, chunk[at - first], at, vocab_,
          vocab_from_header_ ? "" : ", GPT-2's, as header[3] is 0");
    }
    max_token_ = mx;
  } catch (...) {
    release();
    throw;
  }
}

void TokenFile::read(size_t first, size_t n, uint16_t* out) const {
  DP_CHECK(first <= count_ && n <= count_ - first,
           "token file '{}': tokens {}..{} requested, the file holds {}", path_, first, first + n,
           count_);
  read_at(fd_, path_, file_bytes_, out, 2 * n, kTokenFileHeaderBytes + 2 * first);
}

TokenFile::~TokenFile() {
  release();
}

TokenFile::TokenFile(TokenFile&& o) noexcept
    : path_(std::move(o.path_)),
      fd_(std::exchange(o.fd_, -1)),
      file_bytes_(std::exchange(o.file_bytes_, 0)),
      count_(std::exchange(o.count_, 0)),
      vocab_(o.vocab_),
      vocab_from_header_(o.vocab_from_header_),
      max_token_(o.max_token_) {}

TokenFile& TokenFile::operator=(TokenFile&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
    file_bytes_ = std::exchange(o.file_bytes_, 0);
    count_ = std::exchange(o.count_, 0);
    vocab_ = o.vocab_;
    vocab_from_header_ = o.vocab_from_header_;
    max_token_ = o.max_token_;
  }
  return *this;
}

void TokenFile::release() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  file_bytes_ = 0;
  count_ = 0;
}

StagedFile stage_token_file(const std::string& option, const std::string& path,
                            const uint16_t* tokens, size_t count, int vocab_size) {
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
  int32_t header[kTokenFileHeaderInts] = {};
  header[0] = kTokenFileMagic;
  header[1] = kTokenFileVersion;
  header[2] = static_cast<int32_t>(count);
  header[3] = vocab_size;
  return StagedFile(option, path, [&](std::ostream& out) {
    out.write(reinterpret_cast<const char*>(header), sizeof(header));
    out.write(reinterpret_cast<const char*>(tokens), std::streamsize(count * sizeof(uint16_t)));
  });
}

void write_token_file(const std::string& path, const uint16_t* tokens, size_t count,
                      int vocab_size) {
  stage_token_file("token file", path, tokens, count, vocab_size).commit();
}

}  // namespace dp
