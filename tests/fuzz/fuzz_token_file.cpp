// llm.c token files: TokenFile, windows of a TokenDataset over it, and the byte
// tokenizer's decoding of its tokens.
#include "runtime/data/byte_tokenizer.h"
#include "runtime/data/token_dataset.h"
#include "runtime/data/token_file.h"
#include "tests/fuzz/fuzz.h"

namespace dp::fuzz {

void fuzz_one(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("tokens.bin", data, size);
  try {
    auto file = std::make_shared<const TokenFile>(path);
    TokenDataset ds(file, 4);
    std::vector<int32_t> x(4), y(4);
    ds.fill(ds.size() - 1, x.data(), y.data());
    if (file->vocab_size() <= ByteTokenizer::kVocabSize) {
      std::vector<uint16_t> tokens(file->size());
      file->read(0, tokens.size(), tokens.data());
      ByteTokenizer::decode(tokens);
    }
  } catch (const Error& e) {
    require_file_and_position(e, path, "byte ", {"too few for one window"});
    throw;
  }
}

void write_seeds(const std::string& dir) {
  const std::vector<uint16_t> text = ByteTokenizer::encode("Hello, world!\nThe end.");
  std::vector<uint16_t> tokens = {ByteTokenizer::kEndOfText};
  tokens.insert(tokens.end(), text.begin(), text.end());
  write_token_file(dir + "/bytes", tokens.data(), tokens.size(), ByteTokenizer::kVocabSize);
  const std::vector<uint16_t> gpt2 = {50256, 15496, 11, 995, 0, 50256, 464, 886, 13};
  write_token_file(dir + "/gpt2", gpt2.data(), gpt2.size(), kGpt2VocabSize);
}

}  // namespace dp::fuzz
