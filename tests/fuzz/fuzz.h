#pragma once
// The contract of a libFuzzer target in tests/fuzz: one file fuzz_NAME.cpp that defines the
// two functions below and nothing else; tests/fuzz/CMakeLists.txt builds every such file and
// tests/fuzz/run.sh runs it. dp::Error is the one acceptable answer to bad input: a crash, a
// sanitizer report, any other exception, a hang or an abort() from a check is a finding.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.h"

namespace dp::fuzz {

// Runs the parser on one input.
void fuzz_one(const uint8_t* data, size_t size);

// Writes a few valid inputs into the existing directory `dir`, preferably with the project's
// own writers, so that the seeds follow the format as it changes.
void write_seeds(const std::string& dir);

// --- helpers for the targets (entry_points.cpp) ---

// A scratch directory of this process, made on first use and removed at exit. Parsers that
// only read files are fuzzed through files in it.
const std::string& scratch_dir();
// Writes `bytes` to scratch_dir()/name and returns the path.
std::string write_scratch(const std::string& name, const void* bytes, size_t size);
void write_file(const std::string& path, const void* bytes, size_t size);
inline void write_file(const std::string& path, const std::string& text) {
  write_file(path, text.data(), text.size());
}

// The rule every parser follows (issue 10): an error names the file and where in it the
// problem is. Aborts, which libFuzzer reports with the input, when `e` does not mention
// `file` or does not mention `position` (e.g. "byte ", or ":" followed by a line number for
// text), unless it contains one of `whole_file`: problems of the content as a whole (all
// pixels equal) that no single position describes.
void require_file_and_position(const Error& e, const std::string& file, std::string_view position,
                               std::initializer_list<std::string_view> whole_file = {});

// Aborts with `what` when `ok` is false: a property the target checks (a round trip).
void require(bool ok, const char* what);

}  // namespace dp::fuzz
