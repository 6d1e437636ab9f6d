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

// The length of the valid UTF-8 sequence at s[i] (1..4), or 0 when it is not one: no overlong
// forms, surrogates or code points above U+10FFFF (RFC 3629's table).
size_t utf8_length(std::string_view s, size_t i) {
  const auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b = at(i);
  if (b < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size() || at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if ((at(i + k) & 0xC0) != 0x80) return 0;
  }
  return n;
}

}  // namespace

std::string ByteTokenizer::printable(std::string_view bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    const size_t n = utf8_length(bytes, i);
    // C0 controls but newline and tab, DEL, and the C1 controls (U+0080..U+009F: C2 80..9F)
    // are valid UTF-8 that a terminal acts on.
    const bool control = (n == 1 && ((b < 0x20 && b != '\n' && b != '\t') || b == 0x7F)) ||
                         (n == 2 && b == 0xC2 && static_cast<unsigned char>(bytes[i + 1]) < 0xA0);
    if (n == 0 || control) {
      const size_t len = n == 0 ? 1 : n;
      for (size_t k = 0; k < len; ++k) {
        const auto e = static_cast<unsigned char>(bytes[i + k]);
        out += "\\x";
        out += kHex[e >> 4];
        out += kHex[e & 15];
      }
      i += len;
      continue;
    }
    out.append(bytes.substr(i, n));
    i += n;
  }
  return out;
}

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
