#pragma once
// The simplest tokenizer that handles any text: one token per byte (0..255) of the UTF-8
// (or any other) encoding, plus an end-of-text token 256 between documents. Vocabulary 257.
// No merges to learn or ship, nothing unknown, decode(encode(s)) == s for every byte
// string; the price is ~4x longer sequences than GPT-2's BPE on English text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dp {

class ByteTokenizer {
 public:
  static constexpr int kVocabSize = 257;
  static constexpr uint16_t kEndOfText = 256;
  // What decode() writes for an end-of-text token by default (GPT-2's spelling).
  static constexpr const char* kEndOfTextMarker = "<|endoftext|>";

  // Appends one token per byte of `text` to `out`.
  static void encode(std::string_view text, std::vector<uint16_t>& out);
  static std::vector<uint16_t> encode(std::string_view text);

  // Bytes back, end-of-text as `eot` (e.g. "\n" to print samples as paragraphs). Model
  // output may stop inside a multi-byte character: the bytes are returned as they are.
  // Throws dp::Error on a token outside 0..256, naming it and its position.
  static std::string decode(const int32_t* tokens, size_t count,
                            std::string_view eot = kEndOfTextMarker);
  static std::string decode(const std::vector<uint16_t>& tokens,
                            std::string_view eot = kEndOfTextMarker);

  // `bytes` fit for a terminal or a log: valid UTF-8 as it is, and every byte of an invalid
  // sequence, a control character (but newline and tab) or DEL as \xNN, as Python's
  // backslashreplace writes them. A model's sample is any bytes (an untrained one's are
  // noise): printed raw, they garble the terminal (escape sequences, carriage returns) and
  // break tools that read the output as UTF-8.
  static std::string printable(std::string_view bytes);
};

}  // namespace dp
