// prepare-text's side of the library: documents split at separator lines, byte tokens, the
// train/validation cut, and the token file written and read back. Input: the separator up to
// the first newline, one byte that sets the validation fraction, then the text.
#include <algorithm>

#include "runtime/data/byte_tokenizer.h"
#include "runtime/data/text_corpus.h"
#include "runtime/data/token_file.h"
#include "tests/fuzz/fuzz.h"

namespace dp::fuzz {

void fuzz_one(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nl = in.find('\n');
  if (nl == std::string_view::npos || nl + 1 >= in.size()) return;
  const std::string separator(in.substr(0, nl));
  const double val_fraction = static_cast<uint8_t>(in[nl + 1]) / 256.0;
  const std::string_view text = in.substr(nl + 2);
  const std::string path = write_scratch("corpus.txt", text.data(), text.size());

  const TextCorpus c = tokenize_text_files({path}, separator);
  // Every document is end-of-text then its bytes, and decodes back to them.
  std::string docs;
  for (std::string_view d : split_documents(text, separator)) docs += std::string("|") += d;
  require(ByteTokenizer::decode(c.tokens, "|") == docs, "decode(tokens) == the documents");
  for (size_t s : c.doc_starts)
    require(s < c.tokens.size() && c.tokens[s] == ByteTokenizer::kEndOfText,
            "a document starts with end-of-text");
  require(std::is_sorted(c.doc_starts.begin(), c.doc_starts.end()), "documents in order");

  const CorpusSplit split = choose_split(c, val_fraction);
  require(split.cut <= c.tokens.size(), "the cut lies inside the corpus");
  if (val_fraction > 0)
    require(split.cut >= kMinSplitTokens && c.tokens.size() - split.cut >= kMinSplitTokens,
            "both parts get their minimum");
  const std::string bin = scratch_dir() + "/train.bin";
  write_token_file(bin, c.tokens.data(), split.cut, ByteTokenizer::kVocabSize);
  TokenFile back(bin);
  std::vector<uint16_t> tokens(back.size());
  back.read(0, tokens.size(), tokens.data());
  require(back.size() == split.cut && std::equal(tokens.begin(), tokens.end(), c.tokens.begin()),
          "the token file reads back what was written");
}

void write_seeds(const std::string& dir) {
  write_file(dir + "/fortunes",
             std::string("%\n\x40") + "A fortune.\n%\nAnother one,\r\nwith CRLF.\n%\n\n%\nLast\n");
  write_file(dir + "/plain", std::string("\n\x10") + "Just text, no separator.\n\xc3\xa9\n");
}

}  // namespace dp::fuzz
