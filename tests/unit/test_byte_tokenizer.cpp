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

// Samples are printed: valid UTF-8 stays, what a terminal would act on or choke on is
// escaped byte by byte, as Python's backslashreplace.
TEST(ByteTokenizer, PrintableKeepsUtf8AndEscapesTheRest) {
  const std::string text = "Grüße, 世界! \xF0\x9F\x8E\x89\ttab\nline";
  EXPECT_EQ(ByteTokenizer::printable(text), text);
  EXPECT_EQ(ByteTokenizer::printable("a\rb\x1b[2Jc\x7f"), "a\\x0db\\x1b[2Jc\\x7f");
  // C1 controls (CSI is C2 9B) are valid UTF-8 that terminals act on; U+00A0 is not one.
  EXPECT_EQ(ByteTokenizer::printable("\xC2\x9B\xC2\xA0"), "\\xc2\\x9b\xC2\xA0");
  // Invalid: a lone continuation byte, a truncated sequence, an overlong form, a surrogate,
  // above U+10FFFF, and bytes that never occur in UTF-8.
  EXPECT_EQ(ByteTokenizer::printable("\x80x"), "\\x80x");
  EXPECT_EQ(ByteTokenizer::printable("\xE2\x82"), "\\xe2\\x82");
  EXPECT_EQ(ByteTokenizer::printable("\xC0\xAF"), "\\xc0\\xaf");
  EXPECT_EQ(ByteTokenizer::printable("\xED\xA0\x80"), "\\xed\\xa0\\x80");
  EXPECT_EQ(ByteTokenizer::printable("\xF4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");
  EXPECT_EQ(ByteTokenizer::printable("\xFF\xFE"), "\\xff\\xfe");
  EXPECT_EQ(ByteTokenizer::printable(std::string("\0z", 2)), "\\x00z");
  // Every byte string comes out as valid UTF-8 with no control but newline and tab.
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(char(b));
  for (unsigned char c : ByteTokenizer::printable(all + all.substr(128) + "\xE2")) {
    EXPECT_TRUE(c >= 0x20 || c == '\n' || c == '\t') << int(c);
    EXPECT_LT(c, 0x80) << "every byte >= 0x80 above is invalid alone, so escaped";
  }
}
