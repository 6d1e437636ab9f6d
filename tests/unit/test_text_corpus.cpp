// prepare-text's library side: which files are read, how text becomes documents and tokens,
// and where the validation part is cut.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>

#include "runtime/core/atomic_write.h"
#include "runtime/data/byte_tokenizer.h"
#include "runtime/data/text_corpus.h"
#include "runtime/data/token_file.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;
namespace fs = std::filesystem;

namespace {

class TextCorpusTest : public dp::test::TempDirTest {};

std::vector<std::string> docs_of(const std::string& text, const std::string& sep) {
  std::vector<std::string> out;
  for (std::string_view d : split_documents(text, sep)) out.emplace_back(d);
  return out;
}

TextCorpus corpus_of(const std::vector<size_t>& doc_lengths) {
  TextCorpus c;
  for (size_t len : doc_lengths) {
    c.doc_starts.push_back(c.tokens.size());
    c.tokens.push_back(ByteTokenizer::kEndOfText);
    c.tokens.insert(c.tokens.end(), len, 'x');
  }
  return c;
}

}  // namespace

TEST_F(TextCorpusTest, DirectoriesLikeFortunes) {
  write_text(path("zeta"), "z\n");
  write_text(path("alpha"), "a\n");
  write_text(path("alpha.dat"), "binary index");
  write_text(path(".hidden"), "h\n");
  ASSERT_EQ(symlink("alpha", path("alpha.u8").c_str()), 0);
  std::filesystem::create_directory(path("sub"));
  write_text(path("sub/inner"), "i\n");
  EXPECT_EQ(list_text_files({dir_}).files, (std::vector<std::string>{path("alpha"), path("zeta")}));
  // A file named explicitly is read whatever its name (a symlink is followed); inputs keep
  // their order.
  EXPECT_EQ(list_text_files({path("sub/inner"), path("alpha.u8"), path("zeta")}).files,
            (std::vector<std::string>{path("sub/inner"), path("alpha.u8"), path("zeta")}));
  // The same text reached twice, through the symlink and through the directory, by two
  // spellings, or named twice, would count twice: refused, naming both.
  EXPECT_MENTIONS(error_of([&] {
                    list_text_files({path("alpha.u8"), dir_});
                  }),
                  "input files '" + path("alpha.u8") + "' and '" + path("alpha") +
                      "' are the same file (--input " + path("alpha.u8") + " --input " + dir_ +
                      ")");
  EXPECT_MENTIONS(error_of([&] {
                    list_text_files({path("zeta"), dir_ + "/./zeta"});
                  }),
                  "are the same file");
  EXPECT_MENTIONS(error_of([&] {
                    list_text_files({dir_, path("zeta")});
                  }),
                  "input file '" + path("zeta") + "' comes twice");
  ASSERT_EQ(link(path("zeta").c_str(), path("sub/zeta-link").c_str()), 0);  // a hard link
  EXPECT_MENTIONS(error_of([&] {
                    list_text_files({path("zeta"), path("sub")});
                  }),
                  "are the same file");
}

// A directory that holds an earlier run's outputs: they are binary tokens, not text.
TEST_F(TextCorpusTest, DirectoriesSkipOutputsAndTokenFiles) {
  write_text(path("a.txt"), "a\n");
  const std::vector<uint16_t> t = {256, 'x', 'y'};
  write_token_file(path("old.bin"), t.data(), t.size(), 257);
  write_token_file(path("train.bin"), t.data(), t.size(), 257);  // the earlier run's output
  write_text(staging_path(path("val.bin")), "");  // a staging file its writer never filled
  // LLaMA-3's token files (magic 20240801) are no more text than GPT-2's.
  std::vector<uint8_t> llama3(kTokenFileHeaderBytes, 0);
  const int32_t header[2] = {kLlama3TokenFileMagic, kLlama3TokenFileVersion};
  std::memcpy(llama3.data(), header, sizeof(header));
  write_bytes(path("llama3.bin"), llama3);
  // The outputs spelled otherwise than the directory listing spells them.
  const std::string dotted = dir_ + "/./train.bin",
                    up = dir_ + "/../" + fs::path(dir_).filename().string() + "/val.bin";
  const std::vector<TextOutput> outputs = {{"--output", dotted}, {"--val-output", up}};
  const TextFiles f = list_text_files({dir_}, outputs);
  EXPECT_EQ(f.files, (std::vector<std::string>{path("a.txt")}));
  EXPECT_EQ(f.skipped_token_files, (std::vector<std::string>{path("llama3.bin"), path("old.bin")}));
  // Named explicitly, a token file is refused rather than read as text.
  EXPECT_MENTIONS(error_of([&] { list_text_files({path("old.bin")}); }),
                  "input '" + path("old.bin") + "' is an llm.c token file (magic 20240520)");
  EXPECT_MENTIONS(error_of([&] { list_text_files({path("llama3.bin")}); }),
                  "input '" + path("llama3.bin") + "' is an llm.c token file (magic 20240801)");
  // A directory of token files only has nothing to read.
  fs::remove(path("a.txt"));
  EXPECT_MENTIONS(error_of([&] { list_text_files({dir_}, outputs); }), "holds no text files");
}

// An output's name says nothing about what the file holds: text in its place (or, named as an
// input, in its staging file's) is refused, not skipped and then overwritten.
TEST_F(TextCorpusTest, NeverOverwritesText) {
  write_text(path("a.txt"), "first document text\n");
  write_text(path("b.txt"), "precious second text\n");
  write_text(staging_path(path("notes")), "my draft notes\n");
  EXPECT_MENTIONS(error_of([&] {
                    list_text_files({dir_}, {{"--output", path("b.txt")}});
                  }),
                  "--output '" + path("b.txt") + "' would overwrite '" + path("b.txt") +
                      "', a text file of the --input directory '" + dir_ + "'");
  // A directory's hidden files (staging files among them) are not read; named explicitly,
  // the output itself or its staging file is refused.
  EXPECT_MENTIONS(error_of([&] {
                    list_text_files({staging_path(path("notes"))}, {{"--output", path("notes")}});
                  }),
                  "--output '" + path("notes") + "' (written first to '" +
                      staging_path(path("notes")) + "') would overwrite the --input file '" +
                      staging_path(path("notes")) + "'");
  EXPECT_MENTIONS(
      error_of([&] {
        list_text_files({path("a.txt")}, {{"--output", dir_ + "/./a.txt"}});
      }),
      "--output '" + dir_ + "/./a.txt' would overwrite the --input file '" + path("a.txt") + "'");
  // Each file is still as it was (list_text_files writes nothing; the launcher stops here).
  EXPECT_EQ(read_bytes(path("b.txt")).size(), 21u);
}

TEST_F(TextCorpusTest, SameFileHoweverSpelled) {
  write_text(path("x"), "x");
  const std::string base = fs::path(dir_).filename().string();
  EXPECT_TRUE(same_file(path("x"), dir_ + "/./x"));
  EXPECT_TRUE(same_file(path("x"), dir_ + "/../" + base + "/x"));
  EXPECT_TRUE(same_file(path("nx"), dir_ + "/../" + base + "/nx"));  // neither exists yet
  ASSERT_EQ(symlink("x", path("link").c_str()), 0);
  EXPECT_TRUE(same_file(path("x"), path("link")));
  EXPECT_FALSE(same_file(path("x"), path("y")));
  EXPECT_FALSE(same_file(path("x"), path("x.tmp")));
}

TEST_F(TextCorpusTest, BadInputs) {
  EXPECT_MENTIONS(error_of([&] { list_text_files({path("none")}); }),
                  "input '" + path("none") + "' does not exist");
  std::filesystem::create_directory(path("empty"));
  write_text(path("empty/x.dat"), "index");
  EXPECT_MENTIONS(error_of([&] { list_text_files({path("empty")}); }),
                  "input directory '" + path("empty") + "' holds no text files");
  EXPECT_MENTIONS(error_of([&] { list_text_files({}); }), "no input");
}

TEST_F(TextCorpusTest, SplitsDocumentsAtSeparatorLines) {
  EXPECT_EQ(docs_of("one\n%\ntwo\nlines\n%\n", "%"),
            (std::vector<std::string>{"one\n", "two\nlines\n"}));
  // CRLF separators, blank documents dropped, "%" inside a line is text.
  EXPECT_EQ(docs_of("a %\r\n%\r\n  \n%\nb", "%"), (std::vector<std::string>{"a %\r\n", "b"}));
  EXPECT_EQ(docs_of("x\n%\ny\n", ""), (std::vector<std::string>{"x\n%\ny\n"}));
  EXPECT_TRUE(docs_of(" \n\t\n", "").empty());
}

TEST_F(TextCorpusTest, EndOfTextBeforeEveryDocument) {
  write_text(path("f1"), "ab\n%\nc\n");
  write_text(path("f2"), "");
  write_text(path("f3"), "d");
  TextCorpus c = tokenize_text_files({path("f1"), path("f2"), path("f3")}, "%");
  EXPECT_EQ(c.files, 3u);
  EXPECT_EQ(c.tokens, (std::vector<uint16_t>{256, 'a', 'b', '\n', 256, 'c', '\n', 256, 'd'}));
  EXPECT_EQ(c.doc_starts, (std::vector<size_t>{0, 4, 7}));
  // Without a separator each file is one document.
  EXPECT_EQ(tokenize_text_files({path("f1")}, "").doc_starts.size(), 1u);
}

TEST_F(TextCorpusTest, ValidationCutSnapsToANearbyDocumentStart) {
  // 10 documents of 1 + 9 tokens: 100 tokens; 10% wanted -> cut at 90, a document start.
  TextCorpus c = corpus_of(std::vector<size_t>(10, 9));
  CorpusSplit s = choose_split(c, 0.1);
  EXPECT_EQ(s.cut, 90u);
  EXPECT_TRUE(s.at_document_boundary);
  EXPECT_EQ(s.train_documents, 9u);
  EXPECT_EQ(s.val_documents, 1u);
  // 12% wanted (cut 88): the start at 90 is 2 away, within half of 12 -> snapped.
  EXPECT_EQ(choose_split(c, 0.12).cut, 90u);
  // 25% wanted (cut 75): starts at 70 and 80 are 5 away; the first found wins.
  EXPECT_EQ(choose_split(c, 0.25).cut, 70u);
  // No validation part.
  s = choose_split(c, 0);
  EXPECT_EQ(s.cut, 100u);
  EXPECT_EQ(s.train_documents, 10u);
}

TEST_F(TextCorpusTest, ValidationCutInsideALongDocument) {
  // One document of 1 + 199 tokens: 10% -> 20 tokens cut inside it.
  TextCorpus one = corpus_of({199});
  CorpusSplit s = choose_split(one, 0.1);
  EXPECT_EQ(s.cut, 180u);
  EXPECT_FALSE(s.at_document_boundary);
  EXPECT_EQ(s.train_documents, 1u);
  EXPECT_EQ(s.val_documents, 0u);
  // Two documents, the second far too small for the 30% asked: cut inside the first.
  TextCorpus two = corpus_of({95, 3});  // starts 0, 96; 100 tokens
  s = choose_split(two, 0.3);
  EXPECT_EQ(s.cut, 70u);
  EXPECT_FALSE(s.at_document_boundary);
}

TEST_F(TextCorpusTest, NeverAnEmptyPartAndTooSmallText) {
  TextCorpus c = corpus_of({9});          // 10 tokens
  CorpusSplit s = choose_split(c, 0.01);  // 0.1 tokens asked: still at least 2
  EXPECT_EQ(s.cut, 8u);
  s = choose_split(c, 0.99);  // the training part keeps 2
  EXPECT_EQ(s.cut, 2u);
  EXPECT_MENTIONS(error_of([&] { choose_split(corpus_of({2}), 0.1); }),
                  "the text is too small: 3 tokens");
  EXPECT_MENTIONS(error_of([&] { choose_split(TextCorpus{}, 0.1); }), "holds no text");
  EXPECT_MENTIONS(error_of([&] { choose_split(c, 1.0); }), "must be in [0, 1)");
}
