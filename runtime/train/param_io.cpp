#include "runtime/train/param_io.h"

#include <filesystem>
#include <fstream>

#include <pwd.h>
#include <unistd.h>

#include "runtime/core/atomic_write.h"
#include "runtime/core/error.h"

namespace dp {

static_assert(sizeof(float) == 4, "float32 expected");

void refuse_unexpanded_home(const std::string& option, const std::string& path) {
  if (path.empty() || path[0] != '~') return;
  const size_t slash = path.find('/');
  const std::string first = path.substr(0, slash);
  // "~run.jsonl" is a file name; "~alice/x" is a home only where alice is a user.
  if (slash == std::string::npos && first != "~") return;
  if (first != "~" && ::getpwnam(first.c_str() + 1) == nullptr) return;
  std::error_code ec;
  DP_CHECK(std::filesystem::is_directory(first, ec),
           "{} {}: '{}' is not your home directory here: the shell expands it only at the start "
           "of a word (not after --option= nor in a --config file); write $HOME/... or the full "
           "path",
           option, path, first);
}

void check_output_path(const std::string& option, const std::string& path) {
  namespace fs = std::filesystem;
  refuse_unexpanded_home(option, path);
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(path, ec);
  DP_CHECK(!fs::is_symlink(st),
           "{} {}: is a symbolic link; dprun replaces its output files by a rename, which would "
           "replace the link instead of writing where it points (give the target's path)",
           option, path);
  DP_CHECK(!fs::exists(st) || fs::is_regular_file(st),
           "{} {}: exists and is not a regular file (dprun writes only regular files)", option,
           path);
  const fs::path dir = directory_of(path);
  DP_CHECK(fs::is_directory(dir, ec), "{} {}: the directory {} does not exist", option, path,
           dir.string());
  DP_CHECK(access(dir.c_str(), W_OK) == 0, "{} {}: the directory {} is not writable", option, path,
           dir.string());
  // The temporary's name is the file's plus about 12 characters and the host name: a name
  // that fits alone may not fit so, and the write would fail after the run.
  const std::string staged = fs::path(staging_path(path)).filename().string();
  const long name_max = ::pathconf(dir.c_str(), _PC_NAME_MAX);
  DP_CHECK(name_max <= 0 || static_cast<long>(staged.size()) <= name_max,
           "{} {}: the name is too long: dprun writes it first as {} ({} characters, more than "
           "the {} this file system allows)",
           option, path, staged, staged.size(), name_max);
}

void dump_params(const std::vector<Parameter*>& params, const std::vector<Buffer*>& buffers,
                 const std::string& path) {
  check_output_path("--dump-params", path);
  write_file_atomically("--dump-params", path, [&](std::ostream& out) {
    // x86-64 and aarch64 are little-endian, so the in-memory floats are the format.
    auto write = [&](const Tensor& t) {
      DP_CHECK(t.dtype() == DType::f32, "--dump-params: {} is not float32", t.str());
      const Tensor host = t.to(Device::cpu());  // itself on the CPU
      out.write(static_cast<const char*>(host.raw()), static_cast<std::streamsize>(host.nbytes()));
    };
    for (const Parameter* p : params) write(p->value);
    for (const Buffer* b : buffers) write(b->value);
  });
}

std::vector<float> read_params_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  DP_CHECK(in.is_open(), "cannot open parameter file {}", path);
  auto bytes = static_cast<size_t>(in.tellg());
  DP_CHECK(bytes % 4 == 0, "parameter file {} has {} bytes, not a whole number of float32", path,
           bytes);
  std::vector<float> v(bytes / 4);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(bytes));
  DP_CHECK(in.good(), "reading parameter file {} failed", path);
  return v;
}

}  // namespace dp
