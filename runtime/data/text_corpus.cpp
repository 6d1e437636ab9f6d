#include "runtime/data/text_corpus.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include <fmt/format.h>
#include <sys/stat.h>

#include "runtime/core/atomic_write.h"
#include "runtime/core/error.h"
#include "runtime/data/byte_tokenizer.h"
#include "runtime/data/token_file.h"

namespace fs = std::filesystem;

namespace dp {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  });
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DP_CHECK(in, "cannot read '{}': {}", path, std::strerror(errno));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  DP_CHECK(!in.bad(), "error reading '{}'", path);
  return text;
}

// The same file reached twice (`--input DIR --input DIR/a.txt`, `a.txt` and `./a.txt`, a hard
// link) would be counted twice, and its documents could land on both sides of the validation
// cut: the validation loss would be measured on text the model trained on.
void refuse_repeated_files(const std::vector<std::string>& files,
                           const std::vector<std::string>& inputs) {
  std::map<std::pair<dev_t, ino_t>, const std::string*> seen;
  for (const std::string& f : files) {
    struct stat st {};
    DP_CHECK(::stat(f.c_str(), &st) == 0, "cannot read input file '{}': {}", f,
             std::strerror(errno));
    const auto [it, fresh] = seen.emplace(std::make_pair(st.st_dev, st.st_ino), &f);
    if (fresh) continue;
    const std::string what =
        f == *it->second
            ? fmt::format("input file '{}' comes twice", f)
            : fmt::format("input files '{}' and '{}' are the same file", *it->second, f);
    fail(
        "{} (--input {}): its documents would count twice and could land in both the training "
        "and the validation file; name each file once (and keep one link of a file in a "
        "directory)",
        what, fmt::join(inputs, " --input "));
  }
}

// llm.c's token files begin with a little-endian int32 magic (token_file.h), GPT-2's or
// LLaMA-3's, which no text starts with. Returns it, or 0 for any other file.
int32_t token_file_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint8_t b[4] = {};
  if (!in.read(reinterpret_cast<char*>(b), 4)) return 0;
  const int32_t magic = static_cast<int32_t>(uint32_t(b[0]) | uint32_t(b[1]) << 8 |
                                             uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24);
  return magic == kTokenFileMagic || magic == kLlama3TokenFileMagic ? magic : 0;
}

// The output that writes `file`, as itself or through its staging file (`*through` says
// which); null when none does.
const TextOutput* output_writing(const std::string& file, const std::vector<TextOutput>& outputs,
                                 std::string* through) {
  for (const TextOutput& o : outputs) {
    for (const std::string& w : {o.path, staging_path(o.path)}) {
      if (same_file(file, w)) {
        *through = w;
        return &o;
      }
    }
  }
  return nullptr;
}

// "--output 'x'", or "--output 'x' (written first to '.x.tmp.HOST.PID')" when `through` is the
// staging file: the start of a message about an output that would overwrite an input.
std::string overwriter(const TextOutput& o, const std::string& through) {
  std::string s = o.option + " '" + o.path + "'";
  return through == o.path ? s : s + " (written first to '" + through + "')";
}

}  // namespace

TextFiles list_text_files(const std::vector<std::string>& inputs,
                          const std::vector<TextOutput>& outputs) {
  DP_CHECK(!inputs.empty(), "no input given");
  TextFiles out;
  for (const std::string& in : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(in, ec);
    DP_CHECK(fs::exists(st), "input '{}' does not exist", in);
    std::string through;
    if (fs::is_regular_file(st)) {
      if (const TextOutput* o = output_writing(in, outputs, &through))
        fail("{} would overwrite the --input file '{}': the text would be lost",
             overwriter(*o, through), in);
      const int32_t magic = token_file_magic(in);
      DP_CHECK(magic == 0,
               "input '{}' is an llm.c token file (magic {}), not text: give the text it was made "
               "from",
               in, magic);
      out.files.push_back(in);
      continue;
    }
    DP_CHECK(fs::is_directory(st), "input '{}' is neither a regular file nor a directory", in);
    std::vector<std::string> found;
    for (const fs::directory_entry& e : fs::directory_iterator(in, ec)) {
      const std::string name = e.path().filename().string();
      if (e.is_symlink() || !e.is_regular_file() || ends_with(name, ".dat") || name[0] == '.')
        continue;
      const std::string file = e.path().string();
      const int32_t magic = token_file_magic(file);
      // An earlier run's output (or a staging file it left) is skipped; text is not ours to
      // overwrite, whatever its name.
      if (const TextOutput* o = output_writing(file, outputs, &through)) {
        std::error_code size_ec;
        DP_CHECK(magic != 0 || fs::file_size(file, size_ec) == 0,
                 "{} would overwrite '{}', a text file of the --input directory '{}' (not an "
                 "llm.c token file of an earlier run): the text would be lost; give another {}",
                 overwriter(*o, through), file, in, o->option);
        continue;
      }
      if (magic != 0) {
        out.skipped_token_files.push_back(file);
        continue;
      }
      found.push_back(file);
    }
    DP_CHECK(!ec, "cannot list directory '{}': {}", in, ec.message());
    DP_CHECK(!found.empty(),
             "input directory '{}' holds no text files (regular files other than *.dat, "
             "symlinks, hidden files, token files and this run's outputs)",
             in);
    std::sort(found.begin(), found.end());
    out.files.insert(out.files.end(), found.begin(), found.end());
  }
  std::sort(out.skipped_token_files.begin(), out.skipped_token_files.end());
  refuse_repeated_files(out.files, inputs);
  return out;
}

std::vector<std::string_view> split_documents(std::string_view text, const std::string& separator) {
  std::vector<std::string_view> docs;
  auto keep = [&](std::string_view d) {
    if (!is_blank(d)) docs.push_back(d);
  };
  if (separator.empty()) {
    keep(text);
    return docs;
  }
  size_t doc_begin = 0, line = 0;
  while (line < text.size()) {
    size_t nl = text.find('\n', line);
    const size_t line_end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view content = text.substr(line, line_end - line);
    if (!content.empty() && content.back() == '\r') content.remove_suffix(1);
    const size_t next = nl == std::string_view::npos ? text.size() : nl + 1;
    if (content == separator) {
      keep(text.substr(doc_begin, line - doc_begin));
      doc_begin = next;
    }
    line = next;
  }
  keep(text.substr(doc_begin));
  return docs;
}

TextCorpus tokenize_text_files(const std::vector<std::string>& files,
                               const std::string& separator) {
  TextCorpus c;
  for (const std::string& f : files) {
    const std::string text = read_text(f);
    for (std::string_view doc : split_documents(text, separator)) {
      c.doc_starts.push_back(c.tokens.size());
      c.tokens.push_back(ByteTokenizer::kEndOfText);
      ByteTokenizer::encode(doc, c.tokens);
    }
    ++c.files;
  }
  return c;
}

CorpusSplit choose_split(const TextCorpus& corpus, double val_fraction) {
  DP_CHECK(val_fraction >= 0 && val_fraction < 1,
           "the validation fraction must be in [0, 1), got {}", val_fraction);
  const size_t n = corpus.tokens.size();
  DP_CHECK(n > 0, "the input holds no text (every file is empty or whitespace)");
  CorpusSplit s;
  if (val_fraction == 0) {
    s.cut = n;
    s.at_document_boundary = true;
    s.train_documents = corpus.doc_starts.size();
    return s;
  }
  DP_CHECK(n >= 2 * kMinSplitTokens,
           "the text is too small: {} tokens (bytes plus one end-of-text per document); a "
           "training and a validation part need at least {} each",
           n, kMinSplitTokens);
  const size_t want_val =
      std::max(kMinSplitTokens, static_cast<size_t>(std::llround(double(n) * val_fraction)));
  const size_t target = n - std::min(want_val, n - kMinSplitTokens);
  s.cut = target;
  // The nearest document start that leaves both parts their minimum.
  size_t best = 0;
  bool found = false;
  for (size_t b : corpus.doc_starts) {
    if (b < kMinSplitTokens || b > n - kMinSplitTokens) continue;
    const size_t d = b > target ? b - target : target - b;
    if (!found || d < (best > target ? best - target : target - best)) best = b, found = true;
  }
  if (found) {
    const size_t dist = best > target ? best - target : target - best;
    if (2 * dist <= n - target) {
      s.cut = best;
      s.at_document_boundary = true;
    }
  }
  s.at_document_boundary =
      s.at_document_boundary ||
      std::binary_search(corpus.doc_starts.begin(), corpus.doc_starts.end(), s.cut);
  s.train_documents = static_cast<size_t>(
      std::lower_bound(corpus.doc_starts.begin(), corpus.doc_starts.end(), s.cut) -
      corpus.doc_starts.begin());
  s.val_documents = corpus.doc_starts.size() - s.train_documents;
  return s;
}

}  // namespace dp
