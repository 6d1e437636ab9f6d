// write_file_atomically and StagedFile: the output files' one write path (--gemm-profile,
// --trace, --profile-out, --dump-params, token files), and the JSON files written through it.
#include <gtest/gtest.h>

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include "runtime/core/atomic_write.h"
#include "runtime/core/json_write.h"
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
  EXPECT_FALSE(fs::exists(staging_path(path("out"))));
}

TEST_F(AtomicWrite, JsonWithBytesThatAreNotUtf8IsWrittenWithReplacements) {
  // predict --json and bench-allreduce -J record the command line, which may hold any bytes.
  write_json_atomically("--x", path("j"), nlohmann::json{{"arg", "d\xffx"}}, 2);
  EXPECT_EQ(text(path("j")), "{\n  \"arg\": \"d\xef\xbf\xbdx\"\n}\n");
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
  EXPECT_FALSE(fs::exists(staging_path(path("out"))));
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
  fs::create_symlink(path("target"), staging_path(path("out")));
  EXPECT_MENTIONS(
      test::error_of([&] { write_file_atomically("--x", path("out"), nothing); }),
      "--x " + path("out") + ": " + staging_path(path("out")) + " exists and is not a regular");
  EXPECT_EQ(text(path("target")), "kept");
  EXPECT_MENTIONS(test::error_of([&] { write_file_atomically("--x", path("no/out"), nothing); }),
                  "--x " + path("no/out") + ": cannot create " + staging_path(path("no/out")));
}

TEST_F(AtomicWrite, AStagedFileReplacesNothingUntilCommitted) {
  write_text(path("a"), "old a");
  write_text(path("b"), "old b");
  {
    StagedFile a("--a", path("a"), [](std::ostream& o) { o << "new a"; });
    EXPECT_EQ(text(path("a")), "old a");
    EXPECT_EQ(text(staging_path(path("a"))), "new a");
  }  // an exception between staging and commit: the stage goes, the old file stays
  EXPECT_EQ(text(path("a")), "old a");
  EXPECT_FALSE(fs::exists(staging_path(path("a"))));

  std::optional<StagedFile> a;
  a.emplace("--a", path("a"), [](std::ostream& o) { o << "new a"; });
  StagedFile moved(std::move(*a));
  a.reset();  // the moved-from object must leave the stage alone
  EXPECT_EQ(text(staging_path(path("a"))), "new a");
  moved.commit();
  EXPECT_EQ(text(path("a")), "new a");

  StagedFile b("--b", path("b"), [](std::ostream& o) { o << "new b"; });
  b.commit();
  EXPECT_EQ(text(path("b")), "new b");
  EXPECT_FALSE(fs::exists(staging_path(path("b"))));
  EXPECT_MENTIONS(test::error_of([&] { b.commit(); }), "--b " + path("b") + ": committed twice");
}

TEST_F(AtomicWrite, AFailedCommitLeavesTheOldFileAndNoStage) {
  write_text(path("c"), "old");
  {
    StagedFile c("--c", path("c"), [](std::ostream& o) { o << "new"; });
    // The target turns into a non-empty directory after staging: the rename fails.
    fs::remove(path("c"));
    fs::create_directories(path("c/inside"));
    EXPECT_MENTIONS(
        test::error_of([&] { c.commit(); }),
        "--c " + path("c") + ": cannot rename " + staging_path(path("c")) + " into place");
  }
  EXPECT_TRUE(fs::is_directory(path("c/inside")));
  EXPECT_FALSE(fs::exists(staging_path(path("c"))));
}

}  // namespace
}  // namespace dp
