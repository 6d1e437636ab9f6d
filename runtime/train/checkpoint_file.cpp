#include "runtime/train/checkpoint_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "runtime/core/atomic_write.h"
#include "runtime/core/error.h"

namespace dp {

namespace {

// zlib's crc32 takes a 32-bit length: larger payloads go through in chunks.
constexpr size_t kChunk = size_t(64) << 20;

// Payloads from this size on have their CRC computed while they are written (add()): below it
// a thread's start costs more than the overlap saves.
constexpr size_t kOverlapMin = size_t(1) << 20;
// Written bytes are handed to the disk in steps of this size (CheckpointWriter::start_writeback).
constexpr uint64_t kWritebackStep = uint64_t(8) << 20;

uint32_t crc_of(uint32_t crc, const void* data, size_t bytes) {
  const auto* p = static_cast<const Bytef*>(data);
  while (bytes > 0) {
    const size_t n = std::min(bytes, kChunk);
    crc = static_cast<uint32_t>(crc32(crc, p, static_cast<uInt>(n)));
    p += n;
    bytes -= n;
  }
  return crc;
}

uint32_t crc_of(const void* data, size_t bytes) {
  return crc_of(static_cast<uint32_t>(crc32(0L, Z_NULL, 0)), data, bytes);
}

// The section header's fields as they are on disk, for its own CRC.
std::string header_bytes(const std::string& name, uint64_t bytes, uint32_t crc) {
  std::string h;
  const auto len = static_cast<uint32_t>(name.size());
  h.append(reinterpret_cast<const char*>(&len), 4);
  h.append(name);
  h.append(reinterpret_cast<const char*>(&bytes), 8);
  h.append(reinterpret_cast<const char*>(&crc), 4);
  return h;
}

uint64_t kill_after_from_env() {
  const char* spec = std::getenv("DPRUN_FAULT_CHECKPOINT_KILL");
  if (spec == nullptr || *spec == '\0') return 0;
  unsigned long long n = 0;
  DP_CHECK(std::sscanf(spec, "bytes=%llu", &n) == 1 && n > 0,
           "DPRUN_FAULT_CHECKPOINT_KILL='{}': expected bytes=N (N > 0)", spec);
  return n;
}

void fsync_directory(const std::string& dir, const std::string& path) {
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  DP_CHECK(dfd >= 0, "checkpoint {}: cannot open its directory {} to sync it: {}", path, dir,
           std::strerror(errno));
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  DP_CHECK(rc == 0, "checkpoint {}: fsync of the directory {} failed: {}", path, dir,
           std::strerror(err));
}

}  // namespace

bool parse_checkpoint_temp_name(const std::string& filename, CheckpointTempName& out) {
  const std::string mark = ".tmp.";
  // The first ".tmp." after the hidden name: a host name may hold ".tmp." too, a target not.
  const size_t at = filename.find(mark, 1);
  if (filename.size() < 2 || filename[0] != '.' || at == std::string::npos) return false;
  const std::string rest = filename.substr(at + mark.size());
  const size_t dot = rest.rfind('.');
  const std::string digits = dot == std::string::npos ? rest : rest.substr(dot + 1);
  if (digits.empty() || digits.size() > 9 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return false;
  out.target = filename.substr(1, at - 1);
  out.host = dot == std::string::npos ? "" : rest.substr(0, dot);
  out.pid = std::stol(digits);
  return out.pid > 0 && !out.target.empty();
}

CheckpointWriter::CheckpointWriter(std::string path) : path_(std::move(path)) {
  tmp_ = staging_path(path_);
  check_replaceable();
  // O_NOFOLLOW: a link at the temporary name is refused, not written through.
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  DP_CHECK(fd_ >= 0, "checkpoint {}: cannot create {}: {}", path_, tmp_, std::strerror(errno));
  kill_after_ = kill_after_from_env();
  const uint32_t version = kCheckpointVersion, zero = 0;
  write(kCheckpointMagic, sizeof(kCheckpointMagic));
  write(&version, 4);
  write(&zero, 4);
}

void CheckpointWriter::check_replaceable() const {
  struct stat st {};
  if (::lstat(path_.c_str(), &st) != 0) return;  // absent: nothing to replace
  DP_CHECK(S_ISREG(st.st_mode),
           "checkpoint {}: exists and is not a regular file (a link, a directory or a device); "
           "dprun replaces only regular files",
           path_);
}

CheckpointWriter::~CheckpointWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void CheckpointWriter::write(const void* data, size_t bytes) {
  const auto* p = static_cast<const char*>(data);
  while (bytes > 0) {
    size_t n = std::min(bytes, kChunk);
    if (kill_after_ > 0 && written_ + n >= kill_after_) {
      n = static_cast<size_t>(kill_after_ - written_);
      if (n > 0 && ::write(fd_, p, n) > 0) written_ += n;
      // The test of a writer killed mid-file: no destructor, no clean-up, as with kill -9.
      std::fprintf(stderr, "DPRUN_FAULT_CHECKPOINT_KILL: killed after %llu bytes of %s\n",
                   static_cast<unsigned long long>(written_), tmp_.c_str());
      ::raise(SIGKILL);
    }
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    DP_CHECK(w > 0, "checkpoint {}: writing {} failed after {} bytes: {}", path_, tmp_, written_,
             w < 0 ? std::strerror(errno) : "no progress");
    p += w;
    bytes -= static_cast<size_t>(w);
    written_ += static_cast<uint64_t>(w);
    start_writeback();
  }
}

void CheckpointWriter::start_writeback() {
  // Measured on gpt2-small's 1493 MB (tests/bench/bench_checkpoint.sh): without it, commit()'s
  // fsync waited ~0.6 s for the whole file after the CRCs and copies were done. Never past a
  // header that will be rewritten: a page under writeback may have to finish it before it can
  // change. Advisory: an error here is fsync's to report.
  if (!early_writeback_) return;
  const uint64_t until = std::min(written_, pending_header_) & ~uint64_t(4095);
  if (until < writeback_from_ + kWritebackStep) return;
  (void)::sync_file_range(fd_, static_cast<off_t>(writeback_from_),
                          static_cast<off_t>(until - writeback_from_), SYNC_FILE_RANGE_WRITE);
  writeback_from_ = until;
}

void CheckpointWriter::rewrite_header(uint64_t at, const std::string& header) {
  const uint32_t hcrc = crc_of(header.data(), header.size());
  std::string bytes = header;
  bytes.append(reinterpret_cast<const char*>(&hcrc), 4);
  const ssize_t w = ::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(at));
  DP_CHECK(w == static_cast<ssize_t>(bytes.size()),
           "checkpoint {}: writing the section header at byte {} of {} failed: {}", path_, at, tmp_,
           w < 0 ? std::strerror(errno) : "short write");
}

void CheckpointWriter::add(const std::string& name, const void* data, size_t bytes) {
  DP_CHECK(!committed_, "checkpoint {}: section {} added after commit", path_, name);
  DP_CHECK(!name.empty() && name.size() < 4096, "checkpoint section name '{}' is invalid", name);
  DP_CHECK(names_.insert(name).second,
           "checkpoint {}: section '{}' added twice (a reader refuses the file)", path_, name);
  if (!overlap_crc_ || bytes < kOverlapMin) {
    const uint32_t crc = crc_of(data, bytes);
    const std::string h = header_bytes(name, bytes, crc);
    const uint32_t hcrc = crc_of(h.data(), h.size());
    write(h.data(), h.size());
    write(&hcrc, 4);
    write(data, bytes);
    ++sections_;
    return;
  }
  // The CRC (2-4 GB/s here) and the copy into the page cache (1.5-3 GB/s) each take a core
  // (set_overlap_crc says when that pays).
  // The header goes first with CRC 0 and is written again, complete, once the CRC is known:
  // a writer killed in between leaves only its temporary file, which is never renamed.
  const uint64_t at = written_;
  pending_header_ = at;
  const std::string placeholder = header_bytes(name, bytes, 0);
  const uint32_t zero = 0;
  write(placeholder.data(), placeholder.size());
  write(&zero, 4);
  uint32_t crc = 0;
  std::thread crc_thread([&crc, data, bytes] { crc = crc_of(data, bytes); });
  try {
    write(data, bytes);
  } catch (...) {
    crc_thread.join();  // a std::thread destroyed while joinable ends the process
    throw;
  }
  crc_thread.join();
  rewrite_header(at, header_bytes(name, bytes, crc));
  pending_header_ = UINT64_MAX;
  ++sections_;
}

void CheckpointWriter::commit() {
  const uint64_t count = sections_;
  add("end", &count, sizeof(count));
  DP_CHECK(::fsync(fd_) == 0, "checkpoint {}: fsync of {} failed: {}", path_, tmp_,
           std::strerror(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  DP_CHECK(rc == 0, "checkpoint {}: closing {} failed: {}", path_, tmp_, std::strerror(errno));
  check_replaceable();  // something may have appeared there while the sections were written
  DP_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0,
           "checkpoint {}: cannot rename {} into place: {}", path_, tmp_, std::strerror(errno));
  committed_ = true;
  fsync_directory(directory_of(path_), path_);
}

CheckpointReader::CheckpointReader(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  DP_CHECK(fd_ >= 0, "checkpoint {}: cannot open: {}", path_, std::strerror(errno));
  try {
    read_table();
  } catch (...) {
    ::close(fd_);  // the destructor does not run for a constructor that throws
    fd_ = -1;
    throw;
  }
}

void CheckpointReader::read_table() {
  struct stat st {};
  DP_CHECK(::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode), "checkpoint {}: not a regular file",
           path_);
  file_bytes_ = static_cast<uint64_t>(st.st_size);
  uint64_t pos = 0;
  auto read_at = [&](void* dst, size_t n, const char* what) {
    DP_CHECK(pos + n <= file_bytes_,
             "checkpoint {}: byte {}: the file ends inside {} (it is {} bytes: truncated?)", path_,
             pos, what, file_bytes_);
    DP_CHECK(::pread(fd_, dst, n, static_cast<off_t>(pos)) == static_cast<ssize_t>(n),
             "checkpoint {}: byte {}: read failed: {}", path_, pos, std::strerror(errno));
    pos += n;
  };
  char magic[8];
  uint32_t version = 0, reserved = 0;
  read_at(magic, 8, "the header");
  DP_CHECK(std::memcmp(magic, kCheckpointMagic, 8) == 0,
           "checkpoint {}: byte 0: not a dprun checkpoint (no DPRUNCKP magic)", path_);
  read_at(&version, 4, "the header");
  read_at(&reserved, 4, "the header");
  DP_CHECK(reserved == 0, "checkpoint {}: byte 12: corrupt header (reserved field {})", path_,
           reserved);
  DP_CHECK(version >= kOldestCheckpointVersion && version <= kCheckpointVersion,
           "checkpoint {}: byte 8: format version {}, but this dprun reads versions {} to {}{}",
           path_, version, kOldestCheckpointVersion, kCheckpointVersion,
           version > kCheckpointVersion ? " (a newer dprun wrote it)" : "");
  for (;;) {
    const uint64_t at = pos;
    uint32_t len = 0;
    read_at(&len, 4, "a section header");
    DP_CHECK(len > 0 && len < 4096,
             "checkpoint {}: byte {}: corrupt section header (name length {})", path_, at, len);
    CheckpointSection s;
    s.name.resize(len);
    read_at(s.name.data(), len, "a section header");
    uint32_t hcrc = 0;
    read_at(&s.bytes, 8, "a section header");
    read_at(&s.crc, 4, "a section header");
    read_at(&hcrc, 4, "a section header");
    const std::string h = header_bytes(s.name, s.bytes, s.crc);
    DP_CHECK(crc_of(h.data(), h.size()) == hcrc,
             "checkpoint {}: byte {}: corrupt section header (its checksum does not match)", path_,
             at);
    s.offset = pos;
    DP_CHECK(s.bytes <= file_bytes_ - pos,
             "checkpoint {}: byte {}: section '{}' has {} bytes but the file ends after {} "
             "(truncated?)",
             path_, pos, s.name, s.bytes, file_bytes_ - pos);
    pos += s.bytes;
    if (s.name == "end") {
      uint64_t count = 0;
      DP_CHECK(s.bytes == 8, "checkpoint {}: byte {}: corrupt end section", path_, s.offset);
      read_payload(s, &count);
      DP_CHECK(count == sections_.size(),
               "checkpoint {}: byte {}: the end section counts {} sections, the file has {}", path_,
               s.offset, count, sections_.size());
      DP_CHECK(pos == file_bytes_, "checkpoint {}: byte {}: {} unexpected bytes after the end",
               path_, pos, file_bytes_ - pos);
      break;
    }
    DP_CHECK(!has(s.name), "checkpoint {}: byte {}: section '{}' appears twice", path_, at, s.name);
    sections_.push_back(std::move(s));
  }
}

CheckpointReader::~CheckpointReader() {
  if (fd_ >= 0) ::close(fd_);
}

uint32_t CheckpointReader::read_payload(const CheckpointSection& s, void* dst) const {
  std::vector<char> scratch;
  if (dst == nullptr) scratch.resize(std::min<uint64_t>(s.bytes, kChunk));
  uint32_t crc = static_cast<uint32_t>(crc32(0L, Z_NULL, 0));
  uint64_t done = 0;
  while (done < s.bytes) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(s.bytes - done, kChunk));
    char* into = dst ? static_cast<char*>(dst) + done : scratch.data();
    const ssize_t r = ::pread(fd_, into, n, static_cast<off_t>(s.offset + done));
    DP_CHECK(r == static_cast<ssize_t>(n),
             "checkpoint {}: byte {}: read of section '{}' failed: {}", path_, s.offset + done,
             s.name, r < 0 ? std::strerror(errno) : "short read");
    crc = crc_of(crc, into, n);
    done += n;
  }
  DP_CHECK(crc == s.crc,
           "checkpoint {}: byte {}: section '{}' ({} bytes) is corrupt: its checksum does not "
           "match",
           path_, s.offset, s.name, s.bytes);
  return crc;
}

void CheckpointReader::verify() const {
  for (const CheckpointSection& s : sections_) read_payload(s, nullptr);
}

bool CheckpointReader::has(const std::string& name) const {
  return std::any_of(sections_.begin(), sections_.end(),
                     [&](const CheckpointSection& s) { return s.name == name; });
}

const CheckpointSection& CheckpointReader::section(const std::string& name) const {
  for (const CheckpointSection& s : sections_)
    if (s.name == name) return s;
  fail("checkpoint {}: has no section '{}'", path_, name);
}

void CheckpointReader::read(const std::string& name, void* dst, size_t bytes) const {
  const CheckpointSection& s = section(name);
  DP_CHECK(s.bytes == bytes, "checkpoint {}: section '{}' has {} bytes, expected {}", path_, name,
           s.bytes, bytes);
  read_payload(s, dst);
}

std::string CheckpointReader::read_text(const std::string& name) const {
  std::string text(section(name).bytes, '\0');
  read(name, text.data(), text.size());
  return text;
}

}  // namespace dp
