#include "runtime/data/byte_tokenizer.h"

#include "runtime/core/error.h"

namespace dp {

namespace {

template <typename T>
std::string decode_any(const T* tokens, size_t count, std::string_view eot) {
  std::string out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const int64_t t = tokens[i];
    if (t == ByteTokenizer::kEndOfText) {
      out.append(eot);
      continue;
    }
    DP_CHECK(t >= 0 && t < 256,
             "byte tokenizer: token {} at position {} is outside the vocabulary (0..255 bytes, "
             "256 end of text)",
             t, i);
    out.push_back(static_cast<char>(static_cast<unsigned char>(t)));
  }
  return out;
}

}  // namespace

void ByteTokenizer::encode(std::string_view text, std::vector<uint16_t>& out) {
  out.reserve(out.size() + text.size());
  for (char c : text) out.push_back(static_cast<unsigned char>(c));
}

std::vector<uint16_t> ByteTokenizer::encode(std::string_view text) {
  std::vector<uint16_t> out;
  encode(text, out);
  return out;
}

std::string ByteTokenizer::decode(const int32_t* tokens, size_t count, std::string_view eot) {
  return decode_any(tokens, count, eot);
}

std::string ByteTokenizer::decode(const std::vector<uint16_t>& tokens, std::string_view eot) {
  return decode_any(tokens.data(), tokens.size(), eot);
}

}  // namespace dp
