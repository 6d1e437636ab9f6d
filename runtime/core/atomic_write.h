#pragma once
// Output files written whole or not at all. A reader (bench_sgemm --shapes, Perfetto, a later
// run) never sees a half file, and a write that fails (a full disk) leaves the previous file
// where it was instead of truncating it: the content goes to staging_path(path), beside it,
// which is flushed, closed and checked before it is renamed over `path`, and removed on any
// failure.
#include <functional>
#include <ostream>
#include <string>

namespace dp {

// Where an output file is written before it is renamed onto `path`: `.NAME.tmp.HOST.PID` in
// the same directory (a rename within one file system), hidden and this process's own. Two
// jobs writing one file each write their own temporary, so the last rename wins and the file
// is one job's whole output (with one shared `NAME.tmp`, the first rename took the other's
// half-written bytes and the other's rename then failed). Every writer that stages a file
// uses it, so that prepare-text knows which names its outputs pass through.
std::string staging_path(const std::string& path);

// The directory `path` is in: its parent, or "." for a bare file name.
std::string directory_of(const std::string& path);

// This host's name as temporary file names carry it (characters other than letters, digits,
// '.' and '-' as '_'), or "" when it cannot be read.
std::string host_tag();

// `option` names what the file is for in errors (e.g. "--trace"). `write` fills the stream;
// whatever it throws is rethrown after the temporary is removed. Throws dp::Error naming the
// option and `path` when `path` or its temporary exists and is not a regular file (the rename
// would replace a device such as /dev/full, or a symbolic link instead of writing where it
// points), or when the temporary cannot be created, written or renamed.
void write_file_atomically(const std::string& option, const std::string& path,
                           const std::function<void(std::ostream&)>& write);

// write_file_atomically in two halves, for writers of several files that must change all of
// them or none (prepare-text's --output and --val-output): the constructor writes the staging
// file (leaving none behind when it throws), commit() renames it onto `path`, and a StagedFile
// destroyed uncommitted (an exception between the halves) removes it. Errors as above.
class StagedFile {
 public:
  StagedFile(std::string option, std::string path, const std::function<void(std::ostream&)>& write);
  StagedFile(StagedFile&& other) noexcept;
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;
  StagedFile& operator=(StagedFile&&) = delete;
  ~StagedFile();

  void commit();

 private:
  std::string option_, path_;
  bool staged_ = false;  // the staging file exists and is this object's to rename or remove
};

}  // namespace dp
