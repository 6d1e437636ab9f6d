// llm.c token files: the writer's bytes, the reader's reads, and every bad-input case.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/core/atomic_write.h"
#include "runtime/data/token_file.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;

namespace {

class TokenFileTest : public dp::test::TempDirTest {
 protected:
  // A header of 256 int32 (magic, version, count, vocab) followed by raw uint16 tokens.
  static std::vector<uint8_t> file_bytes(int32_t magic, int32_t version, int32_t count,
                                         int32_t vocab, const std::vector<uint16_t>& tokens) {
    std::vector<uint8_t> b(kTokenFileHeaderBytes + 2 * tokens.size(), 0);
    const int32_t h[4] = {magic, version, count, vocab};
    std::memcpy(b.data(), h, sizeof(h));
    if (!tokens.empty())
      std::memcpy(b.data() + kTokenFileHeaderBytes, tokens.data(), 2 * tokens.size());
    return b;
  }
  static std::vector<uint16_t> all_tokens(const TokenFile& f) {
    std::vector<uint16_t> t(f.size());
    f.read(0, t.size(), t.data());
    return t;
  }
  std::string open_error(const std::string& file) {
    return error_of([&] { TokenFile t(file); });
  }
};

}  // namespace

TEST_F(TokenFileTest, WriterProducesLlmcLayout) {
  const std::vector<uint16_t> tokens = {256, 72, 105, 0, 255, 256};
  write_token_file(path("a.bin"), tokens.data(), tokens.size(), 257);
  const std::vector<uint8_t> b = read_bytes(path("a.bin"));
  ASSERT_EQ(b.size(), 1024u + 12u);
  // Little-endian int32 header: 20240520 = 0x0134D888.
  EXPECT_EQ(
      (std::vector<uint8_t>(b.begin(), b.begin() + 16)),
      (std::vector<uint8_t>{0x88, 0xD8, 0x34, 0x01, 1, 0, 0, 0, 6, 0, 0, 0, 0x01, 0x01, 0, 0}));
  for (size_t i = 16; i < 1024; ++i) ASSERT_EQ(b[i], 0) << "header byte " << i;
  // Tokens as little-endian uint16: 256 = 00 01, 72 = 48 00, ...
  EXPECT_EQ((std::vector<uint8_t>(b.begin() + 1024, b.end())),
            (std::vector<uint8_t>{0, 1, 72, 0, 105, 0, 0, 0, 255, 0, 0, 1}));
  EXPECT_FALSE(std::filesystem::exists(staging_path(path("a.bin"))));
}

TEST_F(TokenFileTest, RoundTripThroughTheReader) {
  std::vector<uint16_t> tokens(300000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = uint16_t((i * 7919) % 50000);
  write_token_file(path("t.bin"), tokens.data(), tokens.size(), 50000);
  TokenFile f(path("t.bin"));
  EXPECT_EQ(f.path(), path("t.bin"));
  EXPECT_EQ(f.size(), tokens.size());
  EXPECT_EQ(f.vocab_size(), 50000);
  EXPECT_TRUE(f.vocab_from_header());
  EXPECT_EQ(f.max_token(), 49999);
  EXPECT_EQ(all_tokens(f), tokens);
  uint16_t two[2];
  f.read(123456, 2, two);
  EXPECT_EQ(two[0], tokens[123456]);
  EXPECT_EQ(two[1], tokens[123457]);
  EXPECT_MENTIONS(error_of([&] { f.read(tokens.size() - 1, 2, two); }),
                  "tokens 299999..300001 requested, the file holds 300000");
  // Moving keeps the file open; the moved-from object owns nothing.
  TokenFile g(std::move(f));
  g.read(12345, 1, two);
  EXPECT_EQ(two[0], tokens[12345]);
  // NOLINTNEXTLINE(bugprone-use-after-move,clang-analyzer-cplusplus.Move): the moved-from state
  EXPECT_EQ(f.size(), 0u);
}

// An out-of-vocabulary token past the first chunk of the opening scan is found and placed.
TEST_F(TokenFileTest, ScanFindsABadTokenInALaterChunk) {
  std::vector<uint16_t> tokens(200000, 7);
  tokens[150001] = 300;
  write_bytes(path("late.bin"), file_bytes(20240520, 1, int32_t(tokens.size()), 257, tokens));
  EXPECT_MENTIONS(open_error(path("late.bin")),
                  "byte 301026: token 300 at position 150001 is outside the vocabulary (size 257)");
}

TEST_F(TokenFileTest, HeaderWithoutVocabularyMeansGpt2) {
  write_bytes(path("llmc.bin"), file_bytes(20240520, 1, 3, 0, {50256, 0, 464}));
  TokenFile f(path("llmc.bin"));
  EXPECT_EQ(f.vocab_size(), kGpt2VocabSize);
  EXPECT_FALSE(f.vocab_from_header());
  EXPECT_EQ(all_tokens(f)[0], 50256);
  write_bytes(path("big.bin"), file_bytes(20240520, 1, 2, 0, {50257, 1}));
  const std::string e = open_error(path("big.bin"));
  EXPECT_MENTIONS(e,
                  "byte 1024: token 50257 at position 0 is outside the vocabulary (size 50257, "
                  "GPT-2's");
}

TEST_F(TokenFileTest, EmptyTokenListIsAValidFile) {
  write_token_file(path("e.bin"), nullptr, 0, 257);
  TokenFile f(path("e.bin"));
  EXPECT_EQ(f.size(), 0u);
  EXPECT_EQ(read_bytes(path("e.bin")).size(), 1024u);
}

TEST_F(TokenFileTest, RejectsEveryBadInput) {
  const std::vector<uint16_t> ok = {1, 2, 3, 4, 5};
  EXPECT_MENTIONS(open_error(path("missing.bin")), "'" + path("missing.bin") + "': cannot open");

  write_bytes(path("short.bin"), std::vector<uint8_t>(1000, 0));
  EXPECT_MENTIONS(open_error(path("short.bin")),
                  "byte 1000: the file ends inside the 1024-byte header");

  write_bytes(path("magic.bin"), file_bytes(20240521, 1, 5, 10, ok));
  EXPECT_MENTIONS(open_error(path("magic.bin")),
                  "byte 0: bad magic number 20240521 (expected 20240520");

  write_bytes(path("version.bin"), file_bytes(20240520, 2, 5, 10, ok));
  EXPECT_MENTIONS(open_error(path("version.bin")), "byte 4: unsupported version 2 (expected 1");
  EXPECT_EQ(open_error(path("version.bin")).find("LLaMA-3"), std::string::npos)
      << "version 2 is not llm.c's LLaMA-3 format (that is magic 20240801, version 7)";

  // llm.c's LLaMA-3 files: another magic and version, uint32 tokens (here 2 of them).
  write_bytes(path("llama3.bin"), file_bytes(20240801, 7, 2, 0, {1, 0, 2, 0}));
  const std::string l = open_error(path("llama3.bin"));
  EXPECT_MENTIONS(l, "'" + path("llama3.bin") +
                         "': byte 0: magic number 20240801 is llm.c's "
                         "LLaMA-3 format (version 7, uint32 tokens)");
  EXPECT_MENTIONS(l, "GPT-2 format (magic 20240520, version 1, uint16 tokens)");

  write_bytes(path("trunc.bin"), file_bytes(20240520, 1, 6, 10, ok));
  const std::string t = open_error(path("trunc.bin"));
  EXPECT_MENTIONS(t, "'" + path("trunc.bin") + "': byte 1034: truncated");
  EXPECT_MENTIONS(t, "announces 6 tokens (1036 bytes with the header), the file has 1034 bytes");

  std::vector<uint8_t> trailing = file_bytes(20240520, 1, 5, 10, ok);
  trailing.push_back(7);
  write_bytes(path("trail.bin"), trailing);
  EXPECT_MENTIONS(open_error(path("trail.bin")),
                  "byte 1034: 1 trailing bytes: the header announces 5 tokens");

  write_bytes(path("range.bin"), file_bytes(20240520, 1, 5, 4, ok));
  EXPECT_MENTIONS(open_error(path("range.bin")),
                  "'" + path("range.bin") +
                      "': byte 1030: token 4 at position 3 is outside the vocabulary (size 4)");

  write_bytes(path("negcount.bin"), file_bytes(20240520, 1, -1, 10, {}));
  EXPECT_MENTIONS(open_error(path("negcount.bin")), "byte 8: negative token count -1");

  write_bytes(path("vocab.bin"), file_bytes(20240520, 1, 0, 70000, {}));
  EXPECT_MENTIONS(open_error(path("vocab.bin")), "byte 12: vocabulary size 70000 in header[3]");

  EXPECT_MENTIONS(open_error(dir_), "not a regular file");
}

TEST_F(TokenFileTest, WriterRejectsBadInput) {
  const std::vector<uint16_t> tokens = {1, 300, 2};
  EXPECT_MENTIONS(error_of([&] { write_token_file(path("w.bin"), tokens.data(), 3, 257); }),
                  "token 300 at position 1 is outside the vocabulary (size 257)");
  EXPECT_FALSE(std::filesystem::exists(path("w.bin")));
  EXPECT_MENTIONS(error_of([&] { write_token_file(path("w.bin"), tokens.data(), 3, 0); }),
                  "vocabulary size 0 is outside 1..65536");
  EXPECT_MENTIONS(
      error_of([&] { write_token_file(path("nodir/w.bin"), tokens.data(), 1, 257); }),
      "token file " + path("nodir/w.bin") + ": cannot create " + staging_path(path("nodir/w.bin")));
  std::filesystem::create_directory(path("adir"));
  EXPECT_MENTIONS(error_of([&] { write_token_file(path("adir"), tokens.data(), 1, 257); }),
                  "exists and is not a regular file");
}

TEST_F(TokenFileTest, WriterReplacesAnExistingFile) {
  const std::vector<uint16_t> a = {1, 2, 3}, b = {9};
  write_token_file(path("r.bin"), a.data(), a.size(), 10);
  write_token_file(path("r.bin"), b.data(), b.size(), 10);
  TokenFile f(path("r.bin"));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(all_tokens(f)[0], 9);
}
