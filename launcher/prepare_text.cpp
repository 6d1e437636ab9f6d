#include "launcher/prepare_text.h"

#include "launcher/options.h"

#include <cstdio>
#include <exception>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/program_options.hpp>

#include "runtime/core/atomic_write.h"
#include "runtime/core/error.h"
#include "runtime/data/byte_tokenizer.h"
#include "runtime/data/text_corpus.h"
#include "runtime/data/token_file.h"
#include "runtime/train/param_io.h"

namespace po = boost::program_options;

namespace dp {

namespace {

struct PrepareTextOptions {
  std::vector<std::string> inputs;
  std::string output, val_output, doc_separator;
  double val_fraction = 0.1;
  bool help = false;
  std::string help_text;
};

PrepareTextOptions parse(int argc, char** argv) {
  PrepareTextOptions o;
  // clang-format off
  po::options_description desc(
      "Usage: dprun prepare-text --input PATH [--input PATH ...] --output train.bin "
      "--val-output val.bin [options]\n\n"
      "Turns plain text into byte-level tokens (one per byte, end-of-text 256 before every "
      "document; vocabulary 257) in llm.c's token-file format, for --data tokens:FILE.\n\n"
      "Options");
  desc.add_options()
      ("help,h", "print this help and exit")
      ("input", po::value(&o.inputs)->composing()->value_name("PATH"), "a text file, or a directory whose regular files are read in name order (skipping *.dat, symlinks, hidden files, subdirectories and llm.c token files; an output there must not be text); repeatable. Each file is a document")
      ("output", po::value(&o.output)->value_name("FILE"), "the training token file to write (first to a hidden .FILE.tmp.HOST.PID beside it; both outputs are renamed into place only once both are written)")
      ("val-output", po::value(&o.val_output)->value_name("FILE"), "the validation token file to write (needed when --val-fraction > 0)")
      ("val-fraction", po::value(&o.val_fraction)->default_value(o.val_fraction, "0.1")->value_name("F"), "the share of the tokens, at the end, that goes to validation (cut at a document start where one is near); 0: no validation file")
      ("doc-separator", po::value(&o.doc_separator)->value_name("TEXT"), "a line consisting of this text alone also ends a document (fortune files: %); not empty");
  // clang-format on
  std::ostringstream help;
  help << desc;
  o.help_text = help.str();
  if (o.help_text.empty() || o.help_text.back() != '\n') o.help_text += '\n';
  po::variables_map vm;
  try {
    // argv[1] ("prepare-text") stands where the parser expects the program name.
    const po::parsed_options parsed =
        po::command_line_parser(argc - 1, argv + 1).options(desc).run();
    reject_stray_words(parsed, "prepare-text");
    po::store(parsed, vm);
    po::notify(vm);
  } catch (const po::error& e) {
    fail("prepare-text: {} (see dprun prepare-text --help)", e.what());
  }
  o.help = vm.count("help") > 0;
  if (o.help) return o;
  DP_CHECK(!o.inputs.empty(), "prepare-text: give at least one --input");
  DP_CHECK(!o.output.empty(), "prepare-text: --output is required");
  DP_CHECK(o.val_fraction >= 0 && o.val_fraction < 1,
           "prepare-text: --val-fraction must be in [0, 1), got {}", o.val_fraction);
  DP_CHECK(o.val_fraction == 0 || !o.val_output.empty(),
           "prepare-text: --val-output is required when --val-fraction is {} (> 0)",
           o.val_fraction);
  DP_CHECK(o.val_fraction > 0 || o.val_output.empty(),
           "prepare-text: --val-output given but --val-fraction is 0 (nothing to write there)");
  DP_CHECK(!vm.count("doc-separator") || !o.doc_separator.empty(),
           "prepare-text: --doc-separator is empty: give the text of a separator line (fortune "
           "files: %), or leave it out (each file is one document)");
  // Compared as files, not strings: "./x" and "x" would otherwise pass and the validation
  // tokens overwrite the training tokens.
  if (!o.val_output.empty()) {
    DP_CHECK(!same_file(o.output, o.val_output),
             "prepare-text: --output '{}' and --val-output '{}' are the same file", o.output,
             o.val_output);
  }
  refuse_unexpanded_home("--output", o.output);
  refuse_unexpanded_home("--val-output", o.val_output);
  return o;
}

void run(const PrepareTextOptions& o) {
  std::vector<TextOutput> outputs = {{"--output", o.output}};
  if (!o.val_output.empty()) outputs.push_back({"--val-output", o.val_output});
  const TextFiles listed = list_text_files(o.inputs, outputs);
  for (const std::string& f : listed.skipped_token_files)
    std::printf("prepare-text: skipping '%s': an llm.c token file, not text\n", f.c_str());
  const TextCorpus corpus = tokenize_text_files(listed.files, o.doc_separator);
  const CorpusSplit split = choose_split(corpus, o.val_fraction);
  const size_t n = corpus.tokens.size();
  // Both files are staged before either replaces anything: a failed --val-output leaves no new
  // --output behind it (the uncommitted stage is removed).
  StagedFile train = stage_token_file("--output", o.output, corpus.tokens.data(), split.cut,
                                      ByteTokenizer::kVocabSize);
  if (o.val_fraction > 0) {
    stage_token_file("--val-output", o.val_output, corpus.tokens.data() + split.cut, n - split.cut,
                     ByteTokenizer::kVocabSize)
        .commit();
    // Two renames cannot be one: if the second fails (the directory's permissions changed in
    // between), say that the pair no longer belongs together instead of leaving it silently.
    try {
      train.commit();
    } catch (const std::exception& e) {
      fail(
          "{}; --val-output {} was already written, so it and --output no longer come from one "
          "split: run prepare-text again",
          e.what(), o.val_output);
    }
  } else {
    train.commit();
  }
  std::printf("prepare-text: %zu file(s), %zu documents, %zu tokens (byte-level, vocabulary %d)\n",
              corpus.files, corpus.doc_starts.size(), n, ByteTokenizer::kVocabSize);
  std::printf("  %s: %zu tokens, %zu documents\n", o.output.c_str(), split.cut,
              split.train_documents);
  if (o.val_fraction > 0) {
    const double pct = 100.0 * double(n - split.cut) / double(n);
    if (split.at_document_boundary)
      std::printf("  %s: %zu tokens (%.1f%%), %zu documents\n", o.val_output.c_str(), n - split.cut,
                  pct, split.val_documents);
    else
      std::printf(
          "  %s: %zu tokens (%.1f%%): the end of a document (no document start was near "
          "the cut) and %zu more documents\n",
          o.val_output.c_str(), n - split.cut, pct, split.val_documents);
  }
}

}  // namespace

int prepare_text_main(int argc, char** argv) {
  try {
    const PrepareTextOptions o = parse(argc, argv);
    if (o.help) {
      std::printf("%s", o.help_text.c_str());
      return 0;
    }
    run(o);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dprun: error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "dprun: error: internal error: an unknown exception (please report it)\n");
  }
  return 1;
}

}  // namespace dp
