#include "runtime/core/atomic_write.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include "runtime/core/error.h"

namespace dp {

namespace {

void check_absent_or_regular(const std::string& option, const std::string& path,
                             const std::string& file) {
  struct stat st {};
  if (::lstat(file.c_str(), &st) != 0) return;  // absent (or unreachable: open says why)
  DP_CHECK(S_ISREG(st.st_mode),
           "{} {}: {} exists and is not a regular file (dprun writes its output to a temporary "
           "file and renames it into place, which would replace it)",
           option, path, file);
}

// errno after a failed stream operation, when the library left one.
std::string reason(int err) {
  return err != 0 ? std::strerror(err) : "an I/O error";
}

}  // namespace

std::string host_tag() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) return "";
  std::string tag = host;
  for (char& c : tag)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') c = '_';
  return tag;
}

std::string directory_of(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

std::string staging_path(const std::string& path) {
  const std::string host = host_tag();
  return directory_of(path) + "/." + std::filesystem::path(path).filename().string() + ".tmp." +
         (host.empty() ? "" : host + ".") + std::to_string(::getpid());
}

StagedFile::StagedFile(std::string option, std::string path,
                       const std::function<void(std::ostream&)>& write)
    : option_(std::move(option)), path_(std::move(path)) {
  const std::string tmp = staging_path(path_);
  check_absent_or_regular(option_, path_, path_);
  check_absent_or_regular(option_, path_, tmp);
  errno = 0;
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  DP_CHECK(out.is_open(), "{} {}: cannot create {}: {}", option_, path_, tmp, reason(errno));
  try {
    write(out);
    // The tail of the data sits in the stream's buffer until close(): only close() tells
    // whether it reached the disk.
    out.close();
    DP_CHECK(!out.fail(), "{} {}: writing {} failed: {} (disk full?)", option_, path_, tmp,
             reason(errno));
  } catch (...) {
    if (out.is_open()) out.close();
    std::remove(tmp.c_str());
    throw;
  }
  staged_ = true;
}

StagedFile::StagedFile(StagedFile&& other) noexcept
    : option_(std::move(other.option_)), path_(std::move(other.path_)), staged_(other.staged_) {
  other.staged_ = false;
}

StagedFile::~StagedFile() {
  if (staged_) std::remove(staging_path(path_).c_str());
}

void StagedFile::commit() {
  DP_CHECK(staged_, "{} {}: committed twice", option_, path_);
  const std::string tmp = staging_path(path_);
  errno = 0;
  const bool renamed = std::rename(tmp.c_str(), path_.c_str()) == 0;
  const int err = errno;
  if (renamed) staged_ = false;  // else the destructor removes the staging file
  DP_CHECK(renamed, "{} {}: cannot rename {} into place: {}", option_, path_, tmp, reason(err));
}

void write_file_atomically(const std::string& option, const std::string& path,
                           const std::function<void(std::ostream&)>& write) {
  StagedFile(option, path, write).commit();
}

}  // namespace dp
