// The checkpoint container: round trip, and every way a file can be damaged is an error that
// names the file, the byte and the section, never a crash or a silent misread.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/core/atomic_write.h"
#include "runtime/core/error.h"
#include "runtime/train/checkpoint_file.h"
#include "runtime/train/param_io.h"

using namespace dp;
namespace fs = std::filesystem;

namespace {

class CheckpointFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dprun-ckpt-file.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write_sample(const std::string& name = "a.ckpt") {
    std::string path = dir_ + "/" + name;
    CheckpointWriter w(path);
    w.add("meta", std::string("{\"x\": 1}"));
    std::vector<float> v(1000);
    for (size_t i = 0; i < v.size(); ++i) v[i] = float(i) * 0.5f;
    w.add("param/w", v.data(), v.size() * sizeof(float));
    w.add("empty", nullptr, 0);
    w.commit();
    return path;
  }

  std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  // The message of the Error that reading (and verifying) `path` throws, or "" if none.
  std::string error_of(const std::string& path) {
    try {
      CheckpointReader r(path);
      r.verify();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  std::string dir_;
};

TEST_F(CheckpointFileTest, RoundTripsSections) {
  const std::string path = write_sample();
  CheckpointReader r(path);
  r.verify();
  ASSERT_EQ(r.sections().size(), 3u);
  EXPECT_EQ(r.read_text("meta"), "{\"x\": 1}");
  std::vector<float> v(1000);
  r.read("param/w", v.data(), v.size() * sizeof(float));
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], float(i) * 0.5f);
  EXPECT_EQ(r.section("empty").bytes, 0u);
  EXPECT_FALSE(r.has("nope"));
  EXPECT_THROW(r.read("param/w", v.data(), 8), Error);  // wrong size
  // Nothing but the file itself is left in the directory.
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, 1u);
}

// The reader refuses a section name given twice, so the writer does too, before the file
// exists: a checkpoint nobody can read is worse than none.
TEST_F(CheckpointFileTest, RefusesASectionAddedTwice) {
  const std::string path = dir_ + "/twice.ckpt";
  {
    CheckpointWriter w(path);
    const float x = 1.0f;
    w.add("param/fc1.weight", &x, sizeof x);
    try {
      w.add("param/fc1.weight", &x, sizeof x);
      FAIL() << "a section was added twice";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("section 'param/fc1.weight' added twice"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(CheckpointFileTest, EveryTruncationIsAnErrorNamingTheFile) {
  const std::string path = write_sample();
  const std::string bytes = read_bytes(path);
  const std::string cut = dir_ + "/cut.ckpt";
  // Every length short of the whole file: inside the header, a section header, a payload,
  // and exactly at section boundaries (which only the end section reveals).
  for (size_t n = 0; n < bytes.size(); n += (n < 64 || bytes.size() - n < 64) ? 1 : 97) {
    write_bytes(cut, bytes.substr(0, n));
    const std::string err = error_of(cut);
    ASSERT_NE(err, "") << "a file cut to " << n << " of " << bytes.size() << " bytes was read";
    EXPECT_NE(err.find(cut), std::string::npos) << err;
  }
}

TEST_F(CheckpointFileTest, EveryFlippedByteIsAnError) {
  const std::string path = write_sample();
  const std::string bytes = read_bytes(path);
  const std::string bad = dir_ + "/bad.ckpt";
  for (size_t i = 0; i < bytes.size(); i += (i < 128 || bytes.size() - i < 64) ? 1 : 61) {
    std::string b = bytes;
    b[i] = static_cast<char>(b[i] ^ 0x10);
    write_bytes(bad, b);
    ASSERT_NE(error_of(bad), "") << "a flipped bit at byte " << i << " went unnoticed";
  }
}

TEST_F(CheckpointFileTest, CorruptPayloadNamesTheSection) {
  const std::string path = write_sample();
  std::string bytes = read_bytes(path);
  CheckpointReader r(path);
  const uint64_t at = r.section("param/w").offset + 100;
  bytes[at] = static_cast<char>(bytes[at] ^ 1);
  write_bytes(path, bytes);
  CheckpointReader damaged(path);  // the table is intact
  const std::string err = error_of(path);
  EXPECT_NE(err.find("section 'param/w'"), std::string::npos) << err;
  EXPECT_NE(err.find("checksum"), std::string::npos) << err;
  std::vector<float> v(1000);
  EXPECT_THROW(damaged.read("param/w", v.data(), v.size() * 4), Error);
  EXPECT_EQ(damaged.read_text("meta"), "{\"x\": 1}");  // other sections still read
}

TEST_F(CheckpointFileTest, RejectsOtherFilesAndVersions) {
  write_bytes(dir_ + "/text.ckpt", "hello, this is not a checkpoint at all");
  EXPECT_NE(error_of(dir_ + "/text.ckpt").find("not a dprun checkpoint"), std::string::npos);
  std::string bytes = read_bytes(write_sample());
  bytes[8] = 7;  // version 7
  write_bytes(dir_ + "/v7.ckpt", bytes);
  EXPECT_NE(error_of(dir_ + "/v7.ckpt")
                .find("format version 7, but this dprun reads versions 1 "
                      "to 2 (a newer dprun wrote it)"),
            std::string::npos);
  bytes[8] = 0;
  write_bytes(dir_ + "/v0.ckpt", bytes);
  EXPECT_NE(error_of(dir_ + "/v0.ckpt").find("format version 0"), std::string::npos);
  bytes[8] = 1;  // an older dprun's: still read
  write_bytes(dir_ + "/v1.ckpt", bytes);
  EXPECT_EQ(error_of(dir_ + "/v1.ckpt"), "");
  write_bytes(dir_ + "/trail.ckpt", read_bytes(dir_ + "/a.ckpt") + "x");
  EXPECT_NE(error_of(dir_ + "/trail.ckpt").find("unexpected bytes after the end"),
            std::string::npos);
  EXPECT_NE(error_of(dir_).find("not a regular file"), std::string::npos);
  EXPECT_NE(error_of(dir_ + "/missing.ckpt").find("cannot open"), std::string::npos);
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

TEST_F(CheckpointFileTest, AFailedOpenLeavesNoDescriptorOpen) {
  write_bytes(dir_ + "/bad.ckpt", "DPRUNCKP and then nonsense");
  const size_t before = open_fds();
  for (int i = 0; i < 50; ++i) EXPECT_NE(error_of(dir_ + "/bad.ckpt"), "");
  EXPECT_EQ(open_fds(), before);
}

TEST_F(CheckpointFileTest, ReplacesTheOldFileOnlyWhenComplete) {
  const std::string path = write_sample();
  const std::string before = read_bytes(path);
  {
    CheckpointWriter w(path);
    w.add("meta", std::string("new"));
    EXPECT_TRUE(fs::exists(w.temp_path()));
    EXPECT_EQ(read_bytes(path), before);  // untouched until commit
    // Destroyed without commit (an exception on the way): the old file stays, no temp file.
  }
  EXPECT_EQ(read_bytes(path), before);
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, 1u);
}

// A fixed checkpoint with a payload large enough for the writer to compute its CRC while
// writing it (9 MiB) and small ones that it checksums first.
std::vector<unsigned char> golden_payload() {
  std::vector<unsigned char> big(size_t(9) << 20);
  for (size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<unsigned char>((i * 2654435761u) >> 13);
  return big;
}

void write_golden(const std::string& path, bool overlap_crc) {
  const std::vector<unsigned char> big = golden_payload();
  CheckpointWriter w(path);
  w.set_overlap_crc(overlap_crc);
  w.add("meta", std::string("{\"golden\": true}"));
  w.add("param/big", big.data(), big.size());
  w.add("param/small", big.data() + 7, 1001);
  w.add("empty", nullptr, 0);
  w.commit();
}

TEST_F(CheckpointFileTest, TheFormatIsByteForByteWhatItWas) {
  // Size and CRC32 of the whole file as the writer wrote it before it overlapped the payload
  // CRC with the write (computed then, with that writer): the format must not change.
  for (const bool overlap : {true, false}) {
    const std::string path = dir_ + (overlap ? "/overlap.ckpt" : "/serial.ckpt");
    write_golden(path, overlap);
    std::string bytes = read_bytes(path);
    EXPECT_EQ(bytes.size(), 9438357u) << path;
    // The layout is unchanged since then; only the version field went up (to 2: settings
    // older readers ignored). The golden CRC is of the file with version 1.
    ASSERT_EQ(bytes[8], char(kCheckpointVersion)) << path;
    bytes[8] = 1;
    EXPECT_EQ(crc32(0L, reinterpret_cast<const Bytef*>(bytes.data()), uInt(bytes.size())),
              0xef68c097u)
        << path;
    CheckpointReader r(path);
    r.verify();
    std::vector<unsigned char> back(size_t(9) << 20);
    r.read("param/big", back.data(), back.size());
    EXPECT_TRUE(back == golden_payload());
  }
  EXPECT_EQ(read_bytes(dir_ + "/overlap.ckpt"), read_bytes(dir_ + "/serial.ckpt"));
}

TEST_F(CheckpointFileTest, ACorruptLargeSectionIsFound) {
  // The large section's header is written twice (CRC 0 first): its final CRC must check.
  const std::string path = dir_ + "/g.ckpt";
  write_golden(path, true);
  const std::string bytes = read_bytes(path);
  const size_t payload = bytes.find("param/big") + 9 + 16;  // name, length, CRC, header CRC
  for (size_t at : {payload - 8, payload - 1, payload, payload + (size_t(5) << 20)}) {
    std::string b = bytes;
    b[at] = static_cast<char>(b[at] ^ 0x01);
    write_bytes(dir_ + "/bad.ckpt", b);
    EXPECT_NE(error_of(dir_ + "/bad.ckpt"), "") << "a flipped bit at byte " << at;
  }
}

TEST_F(CheckpointFileTest, FailedWriteLeavesNoTemporaryFile) {
  // A full disk, made deterministic: a file-size limit makes write() fail with EFBIG. Also with
  // the CRC thread, which must be joined when the write it overlaps throws.
  for (const bool overlap : {false, true}) {
    struct rlimit old {};
    ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
    std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old;
    small.rlim_cur = 4096;
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
    std::string err;
    try {
      CheckpointWriter w(dir_ + "/big.ckpt");
      w.set_overlap_crc(overlap);
      std::vector<char> big(1 << 20, 1);
      w.add("param/big", big.data(), big.size());
      w.commit();
    } catch (const Error& e) {
      err = e.what();
    }
    setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, SIG_DFL);
    EXPECT_NE(err.find("big.ckpt"), std::string::npos) << err;
    EXPECT_NE(err.find("failed"), std::string::npos) << err;
    EXPECT_TRUE(fs::is_empty(dir_)) << "a failed write left a file behind";
  }
}

}  // namespace

// Only regular files are ever replaced by the rename: a link (whose target would stay as it
// was while the link became a file) or a device at the checkpoint's name is an error, and so
// is a link at the temporary name (which would be written through).
TEST_F(CheckpointFileTest, ReplacesOnlyRegularFiles) {
  const std::string victim = dir_ + "/victim", link = dir_ + "/step-1.ckpt";
  write_bytes(victim, "keep me");
  fs::create_symlink(victim, link);
  std::string err;
  try {
    write_sample("step-1.ckpt");
  } catch (const Error& e) {
    err = e.what();
  }
  EXPECT_NE(err.find("step-1.ckpt: exists and is not a regular file"), std::string::npos) << err;
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(read_bytes(victim), "keep me");

  ASSERT_EQ(mkfifo((dir_ + "/step-2.ckpt").c_str(), 0600), 0);
  EXPECT_THROW(write_sample("step-2.ckpt"), Error);
  EXPECT_TRUE(fs::is_fifo(dir_ + "/step-2.ckpt"));

  const std::string tmp = staging_path(dir_ + "/step-3.ckpt");
  fs::create_symlink(victim, tmp);
  EXPECT_THROW(write_sample("step-3.ckpt"), Error);
  EXPECT_EQ(read_bytes(victim), "keep me");
  EXPECT_FALSE(fs::exists(dir_ + "/step-3.ckpt"));

  // A regular file is replaced as before.
  write_bytes(dir_ + "/step-4.ckpt", "old");
  EXPECT_NO_THROW(write_sample("step-4.ckpt"));
  EXPECT_EQ(error_of(dir_ + "/step-4.ckpt"), "");
}

TEST_F(CheckpointFileTest, OutputPathsRefuseLinksAndDumpTemporariesAreNotWrittenThrough) {
  const std::string victim = dir_ + "/victim", link = dir_ + "/params.bin";
  write_bytes(victim, "keep me");
  fs::create_symlink(victim, link);
  try {
    check_output_path("--dump-params", link);
    ADD_FAILURE() << "a symbolic link was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is a symbolic link"), std::string::npos) << e.what();
  }
  fs::remove(link);
  fs::create_symlink(victim, staging_path(link));
  Parameter p("w", {3});
  EXPECT_THROW(dump_params({&p}, {}, link), Error);
  EXPECT_EQ(read_bytes(victim), "keep me");
  fs::remove(staging_path(link));
  dump_params({&p}, {}, link);
  EXPECT_EQ(read_params_file(link).size(), 3u);
}

// "--checkpoint-dir=~/ck" reaches dprun unexpanded: refused naming the home-directory mix-up
// rather than made as ./~/ck. A directory really named "~" (made on purpose) is used.
TEST_F(CheckpointFileTest, AnUnexpandedHomeDirectoryIsRefused) {
  const std::string cwd = fs::current_path().string();
  fs::current_path(dir_);
  std::string home_message, dump_message;
  try {
    refuse_unexpanded_home("--checkpoint-dir", "~/ck");
  } catch (const Error& e) {
    home_message = e.what();
  }
  try {
    check_output_path("--dump-params", "~/params.bin");
  } catch (const Error& e) {
    dump_message = e.what();
  }
  EXPECT_NO_THROW(refuse_unexpanded_home("--checkpoint-dir", "ck/~"));
  EXPECT_NO_THROW(refuse_unexpanded_home("--log-json", "~run.jsonl"));   // a file's name
  EXPECT_THROW(refuse_unexpanded_home("--log-json", "~root/x"), Error);  // root's home
  EXPECT_NO_THROW(refuse_unexpanded_home("--log-json", "~no-such-user-x/x"));
  fs::create_directory("~");
  EXPECT_NO_THROW(refuse_unexpanded_home("--checkpoint-dir", "~/ck"));
  fs::current_path(cwd);
  EXPECT_NE(home_message.find("--checkpoint-dir ~/ck: '~' is not your home directory here"),
            std::string::npos)
      << home_message;
  EXPECT_NE(dump_message.find("--dump-params ~/params.bin: '~' is not your home directory"),
            std::string::npos)
      << dump_message;
}

// The temporary's name is longer than the file's: a name that fits alone but not so is refused
// before the run, not after it.
TEST_F(CheckpointFileTest, ANameTooLongForItsTemporaryIsRefusedUpFront) {
  const std::string fits = dir_ + "/" + std::string(200, 'p'),
                    too_long = dir_ + "/" + std::string(250, 'p');
  EXPECT_NO_THROW(check_output_path("--dump-params", fits));
  try {
    check_output_path("--dump-params", too_long);
    ADD_FAILURE() << "a name whose temporary is too long was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the name is too long: dprun writes it first as ."),
              std::string::npos)
        << e.what();
  }
}
