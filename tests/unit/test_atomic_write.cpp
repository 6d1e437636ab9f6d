// write_file_atomically: the output files' one write path (--gemm-profile, --trace,
// --profile-out, --dump-params).
#include <gtest/gtest.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "runtime/core/atomic_write.h"
#include "tests/support/temp_dir.h"

namespace dp {
namespace {

namespace fs = std::filesystem;

class AtomicWrite : public test::TempDirTest {
 protected:
  std::string text(const std::string& file) const {
    const std::vector<uint8_t> b = read_bytes(file);
    return std::string(b.begin(), b.end());
  }
};

TEST_F(AtomicWrite, ReplacesTheFileWhole) {
  write_text(path("out"), "old");
  write_file_atomically("--x", path("out"), [](std::ostream& o) { o << "new"; });
  EXPECT_EQ(text(path("out")), "new");
  EXPECT_FALSE(fs::exists(path("out.tmp")));
}

TEST_F(AtomicWrite, AWriterThatThrowsLeavesTheOldFileAndNoTemporary) {
  write_text(path("out"), "old");
  EXPECT_THROW(write_file_atomically("--x", path("out"),
                                     [](std::ostream& o) {
                                       o << "half";
                                       throw std::runtime_error("stop");
                                     }),
               std::runtime_error);
  EXPECT_EQ(text(path("out")), "old");
  EXPECT_FALSE(fs::exists(path("out.tmp")));
}

TEST_F(AtomicWrite, RefusesWhatARenameWouldReplace) {
  auto nothing = [](std::ostream&) {};
  fs::create_directory(path("d"));
  EXPECT_MENTIONS(test::error_of([&] { write_file_atomically("--x", path("d"), nothing); }),
                  "--x " + path("d") + ": " + path("d") + " exists and is not a regular file");
  write_text(path("target"), "kept");
  fs::create_symlink(path("target"), path("link"));
  EXPECT_MENTIONS(test::error_of([&] { write_file_atomically("--x", path("link"), nothing); }),
                  "exists and is not a regular file");
  // A link at the temporary name would be written through.
  fs::create_symlink(path("target"), path("out.tmp"));
  EXPECT_MENTIONS(test::error_of([&] { write_file_atomically("--x", path("out"), nothing); }),
                  "--x " + path("out") + ": " + path("out.tmp") + " exists and is not a regular");
  EXPECT_EQ(text(path("target")), "kept");
  EXPECT_MENTIONS(test::error_of([&] { write_file_atomically("--x", path("no/out"), nothing); }),
                  "--x " + path("no/out") + ": cannot create " + path("no/out.tmp"));
}

}  // namespace
}  // namespace dp
