// Byte-level tokenizer: exact tokens of UTF-8 text, and decode(encode(s)) == s.
#include <gtest/gtest.h>

#include "runtime/data/byte_tokenizer.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;

TEST(ByteTokenizer, OneTokenPerUtf8Byte) {
  // "é" is C3 A9, "€" E2 82 AC, "😀" F0 9F 98 80.
  const std::string text = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\n";
  EXPECT_EQ(ByteTokenizer::encode(text),
            (std::vector<uint16_t>{97, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, 10}));
  EXPECT_EQ(ByteTokenizer::kVocabSize, 257);
  EXPECT_EQ(ByteTokenizer::kEndOfText, 256);
}

TEST(ByteTokenizer, RoundTripsEveryByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(char(b));
  const std::string text = "Grüße, 世界! \xF0\x9F\x8E\x89 tab\there\r\n" + all;
  const std::vector<uint16_t> t = ByteTokenizer::encode(text);
  EXPECT_EQ(t.size(), text.size());
  EXPECT_EQ(ByteTokenizer::decode(t), text);
  std::vector<int32_t> wide(t.begin(), t.end());
  EXPECT_EQ(ByteTokenizer::decode(wide.data(), wide.size()), text);
}

TEST(ByteTokenizer, AppendsAndMarksEndOfText) {
  std::vector<uint16_t> t = {ByteTokenizer::kEndOfText};
  ByteTokenizer::encode("hi", t);
  t.push_back(ByteTokenizer::kEndOfText);
  ByteTokenizer::encode("yo", t);
  EXPECT_EQ(t, (std::vector<uint16_t>{256, 104, 105, 256, 121, 111}));
  EXPECT_EQ(ByteTokenizer::decode(t), "<|endoftext|>hi<|endoftext|>yo");
  EXPECT_EQ(ByteTokenizer::decode(t, "\n"), "\nhi\nyo");
}

TEST(ByteTokenizer, RejectsTokensOutsideTheVocabulary) {
  const std::vector<int32_t> t = {104, 257, 105};
  EXPECT_MENTIONS(error_of([&] { ByteTokenizer::decode(t.data(), t.size()); }),
                  "token 257 at position 1 is outside the vocabulary");
  const std::vector<int32_t> neg = {-1};
  EXPECT_MENTIONS(error_of([&] { ByteTokenizer::decode(neg.data(), 1); }),
                  "token -1 at position 0");
}
