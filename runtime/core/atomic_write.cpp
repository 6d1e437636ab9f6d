#include "runtime/core/atomic_write.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

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

std::string staging_path(const std::string& path) {
  return path + ".tmp";
}

void write_file_atomically(const std::string& option, const std::string& path,
                           const std::function<void(std::ostream&)>& write) {
  const std::string tmp = staging_path(path);
  check_absent_or_regular(option, path, path);
  check_absent_or_regular(option, path, tmp);
  errno = 0;
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  DP_CHECK(out.is_open(), "{} {}: cannot create {}: {}", option, path, tmp, reason(errno));
  try {
    write(out);
    // The tail of the data sits in the stream's buffer until close(): only close() tells
    // whether it reached the disk.
    out.close();
    DP_CHECK(!out.fail(), "{} {}: writing {} failed: {} (disk full?)", option, path, tmp,
             reason(errno));
    DP_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "{} {}: cannot rename {} into place: {}",
             option, path, tmp, reason(errno));
  } catch (...) {
    if (out.is_open()) out.close();
    std::remove(tmp.c_str());
    throw;
  }
}

}  // namespace dp
