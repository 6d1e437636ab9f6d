// libFuzzer's entry points for every target: the target's fuzz_one() with dp::Error accepted,
// and `TARGET -write_seeds=DIR`, which writes the target's seed corpus instead of fuzzing.
#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "tests/fuzz/fuzz.h"

namespace dp::fuzz {

const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/dprun_fuzz_XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    return tmpl;
  }();
  // libFuzzer leaves through exit() (and _Exit() on a finding, which leaves the directory for
  // the post-mortem): every normal end removes it.
  static const bool cleanup = [] {
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    });
    return true;
  }();
  (void)cleanup;
  return dir;
}

void write_file(const std::string& path, const void* bytes, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(size));
  out.close();
  if (!out.good()) {
    std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
    std::abort();
  }
}

std::string write_scratch(const std::string& name, const void* bytes, size_t size) {
  std::string path = scratch_dir() + "/" + name;
  write_file(path, bytes, size);
  return path;
}

void require_file_and_position(const Error& e, const std::string& file, std::string_view position,
                               std::initializer_list<std::string_view> whole_file) {
  const std::string_view msg = e.what();
  bool whole = false;
  for (std::string_view w : whole_file) whole = whole || msg.find(w) != std::string_view::npos;
  const bool names_file = msg.find(file) != std::string_view::npos;
  const bool names_position = whole || msg.find(position) != std::string_view::npos;
  if (names_file && names_position) return;
  std::fprintf(stderr, "fuzz: the error message does not name %s: ",
               names_file ? "the position" : "the file");
  std::fwrite(msg.data(), 1, msg.size(), stderr);  // the whole of it, NUL bytes included
  std::fputc('\n', stderr);
  std::abort();
}

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz: property violated: %s\n", what);
  std::abort();
}

}  // namespace dp::fuzz

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  constexpr std::string_view kFlag = "-write_seeds=";
  for (int i = 1; i < *argc; ++i) {
    std::string_view arg = (*argv)[i];
    if (arg.substr(0, kFlag.size()) != kFlag) continue;
    const std::string dir(arg.substr(kFlag.size()));
    std::filesystem::create_directories(dir);
    try {
      dp::fuzz::write_seeds(dir);
    } catch (const dp::Error& e) {
      std::fprintf(stderr, "writing seeds into %s: %s\n", dir.c_str(), e.what());
      std::exit(1);
    }
    std::exit(0);
  }
  return 0;
}

namespace {

size_t open_fds() {
  size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A parser that leaks a descriptor on bad input fails only after thousands of inputs, as
  // "cannot open": checked on every input, the leak is reported with the input that caused it.
  const size_t fds = open_fds();
  try {
    dp::fuzz::fuzz_one(data, size);
  } catch (const dp::Error&) {
    // The expected answer to bad input; targets check its message themselves.
  }
  if (open_fds() > fds) {
    std::fprintf(stderr, "fuzz: this input leaves %zu more file descriptor(s) open\n",
                 open_fds() - fds);
    std::abort();
  }
  return 0;
}
