#pragma once
// Plain text files -> one byte-level token stream with document boundaries, and where to
// cut it into training and validation parts: the library side of `dprun prepare-text`.
//
// Every document is preceded by the end-of-text token (as llm.c's data scripts do), so
// documents are separated by it and each split starts at a document start when the cut
// falls on a boundary. A document is a whole file, or, with a separator, the text between
// lines that consist of the separator alone (fortune files use "%").
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/same_file.h"  // same_file, which list_text_files applies

namespace dp {

struct TextFiles {
  std::vector<std::string> files;
  // Files of an input directory skipped because they begin with an llm.c token-file magic
  // (GPT-2's or LLaMA-3's: an earlier run's outputs, or anyone's token files): binary, not
  // text.
  std::vector<std::string> skipped_token_files;
};

// A file this run will write: the option that names it ("--output") and its path.
struct TextOutput {
  std::string option, path;
};

// The files to read, in order: each input that is a file as it is (a symlink named
// explicitly is followed); each input that is a directory contributes its regular files,
// sorted by name, skipping symlinks (fortune's *.u8 links would duplicate text), *.dat
// files (fortune's binary indexes), hidden files, subdirectories, llm.c token files (listed
// in skipped_token_files) and the `outputs` with their staging files (an earlier run's, when
// empty or token files). Throws dp::Error naming an input that does not exist, a file named
// explicitly that is a token file, a directory with no usable file, and an input file that
// an output or its staging file would overwrite (named explicitly, or a text file of an input
// directory): the text would be lost; and a file reached twice (named again, spelled another
// way, a hard link): it would count twice and could be both trained and validated on.
TextFiles list_text_files(const std::vector<std::string>& inputs,
                          const std::vector<TextOutput>& outputs = {});

// The documents of one text: the whole text, or the parts between separator lines (a line
// equal to `separator`, a trailing '\r' ignored) when it is not empty. Documents that are
// empty or only whitespace are dropped.
std::vector<std::string_view> split_documents(std::string_view text, const std::string& separator);

struct TextCorpus {
  std::vector<uint16_t> tokens;    // ByteTokenizer tokens, end-of-text before every document
  std::vector<size_t> doc_starts;  // token index of each document's end-of-text token
  size_t files = 0;
};

// Reads and tokenizes `files` (see list_text_files) in order; dp::Error naming a file that
// cannot be read.
TextCorpus tokenize_text_files(const std::vector<std::string>& files, const std::string& separator);

struct CorpusSplit {
  size_t cut = 0;  // tokens [0, cut) train, [cut, size) validation
  bool at_document_boundary = false;
  size_t train_documents = 0, val_documents = 0;  // documents that start in each part
};

// Each part needs at least this many tokens: one window of context 1.
constexpr size_t kMinSplitTokens = 2;

// The validation part is about the last `val_fraction` of the tokens: the cut is the
// document start nearest to size * (1 - val_fraction) if that keeps the validation part
// within half of the requested size either way, else exactly at the token (a single long
// document is cut inside). val_fraction in [0, 1); 0 means no validation part (cut = size).
// With val_fraction > 0 both parts get at least kMinSplitTokens tokens, else dp::Error
// (the text is too small).
CorpusSplit choose_split(const TextCorpus& corpus, double val_fraction);

}  // namespace dp
