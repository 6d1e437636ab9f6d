#pragma once
// The checkpoint container: named sections, each with its own CRC32, written atomically.
//
//   "DPRUNCKP" | u32 version | u32 0
//   per section: u32 name length | name | u64 payload length | u32 payload CRC32
//                | u32 CRC32 of the four fields before it | payload
//   last section "end": u64 number of sections before it
//
// Little-endian throughout (x86-64, aarch64). The header CRC makes a corrupted length an
// error at its own byte, not a multi-gigabyte read; the "end" section makes a file cut at
// a section boundary an error too. The writer fills a temporary file in the target's
// directory, fsyncs it, renames it over the target and fsyncs the directory: a process
// killed at any point leaves either the old file or the complete new one, never a mix.
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

namespace dp {

inline constexpr char kCheckpointMagic[8] = {'D', 'P', 'R', 'U', 'N', 'C', 'K', 'P'};
// The version this dprun writes, and the oldest it reads. A reader refuses a newer version by
// name, so the version goes up whenever a checkpoint holds something an older reader would
// take without a word and train differently with (a setting it does not know, a field whose
// meaning changed). 2: settings older readers ignored (--weight-decay-1d, --warmup-steps
// under --lr-schedule constant), the build identity in dprun_version.
inline constexpr uint32_t kCheckpointVersion = 2;
inline constexpr uint32_t kOldestCheckpointVersion = 1;

class CheckpointWriter {
 public:
  // Creates the temporary file next to `path`; throws dp::Error naming it when it cannot.
  explicit CheckpointWriter(std::string path);
  // Removes the temporary file unless commit() succeeded.
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Throws before writing anything when `name` was added already (the file would be
  // unreadable).
  void add(const std::string& name, const void* data, size_t bytes);
  void add(const std::string& name, const std::string& text) {
    add(name, text.data(), text.size());
  }
  // Ends the file, makes it durable and moves it into place. Throws (and leaves no
  // temporary file) when any write failed, e.g. a full disk.
  void commit();

  // The same bytes with either switch (tests/bench/bench_checkpoint.cpp measures the writer
  // as it was, both off, against each, in one run).
  // On by default: the disk starts writing what has been written so far (sync_file_range)
  // while the rest is checksummed and copied, instead of all of it in commit()'s fsync.
  void set_early_writeback(bool on) { early_writeback_ = on; }
  // Off by default: large payloads' CRC computed on a second thread while the payload is
  // written, the section header (which holds it, before the payload) written over its
  // placeholder afterwards. It needs an idle core: on the shared 2-core VM (load 3-11) its
  // median beat the writer without it in 2 of 7 bench runs of 1493 MB (0.75-1.85 s against
  // 0.88-1.52 s): a start and a join per section, each waiting for a slice of a busy CPU.
  // Measure before turning it on.
  void set_overlap_crc(bool on) { overlap_crc_ = on; }

  uint64_t bytes_written() const { return written_; }
  const std::string& temp_path() const { return tmp_; }

 private:
  void write(const void* data, size_t bytes);
  // Writes the header at its place again (pwrite), now with the payload's CRC.
  void rewrite_header(uint64_t at, const std::string& header);
  // path_ is absent or a regular file: the rename would replace a link or a device.
  void check_replaceable() const;
  void start_writeback();

  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  uint64_t sections_ = 0;
  std::unordered_set<std::string> names_;  // the reader refuses a name given twice
  uint64_t kill_after_ = 0;                // test hook DPRUN_FAULT_CHECKPOINT_KILL=bytes=N (0: off)
  bool committed_ = false;
  bool overlap_crc_ = false;
  bool early_writeback_ = true;
  uint64_t writeback_from_ = 0;           // bytes before it are on their way to the disk
  uint64_t pending_header_ = UINT64_MAX;  // a header still to be rewritten (overlap_crc_)
};

// CheckpointWriter fills staging_path(path) (runtime/core/atomic_write.h), ".NAME.tmp.HOST.PID"
// in its directory: hidden, so that no listing takes it for a checkpoint; naming the writing
// process and its host (host_tag()), so that --resume auto can tell a leftover of a killed
// writer from a file still being written (earlier versions wrote ".NAME.tmp.PID", without the
// host: still recognised).

struct CheckpointTempName {
  std::string target;  // "step-00000040.ckpt"
  std::string host;    // empty in the old form without a host
  long pid = 0;
};
// Parses a file name (no directory) of a checkpoint temporary's form, old or new: false for
// anything else, and for a PID that is not a positive number.
bool parse_checkpoint_temp_name(const std::string& filename, CheckpointTempName& out);

struct CheckpointSection {
  std::string name;
  uint64_t offset = 0;  // of the payload, from the start of the file
  uint64_t bytes = 0;
  uint32_t crc = 0;
};

class CheckpointReader {
 public:
  // Reads the header and the section table (not the payloads). Throws dp::Error naming the
  // file and the byte where it is not a complete checkpoint of a version this dprun reads.
  explicit CheckpointReader(std::string path);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  // Checks every payload against its CRC; throws naming the first section that fails.
  void verify() const;
  bool has(const std::string& name) const;
  const CheckpointSection& section(const std::string& name) const;
  const std::vector<CheckpointSection>& sections() const { return sections_; }
  // Copies section `name` into dst, which must be exactly its size; checks its CRC.
  void read(const std::string& name, void* dst, size_t bytes) const;
  std::string read_text(const std::string& name) const;
  const std::string& path() const { return path_; }
  uint64_t file_bytes() const { return file_bytes_; }

 private:
  void read_table();  // the constructor's parsing
  // Reads the payload in chunks into dst (or only checksums it when dst is null).
  uint32_t read_payload(const CheckpointSection& s, void* dst) const;

  std::string path_;
  int fd_ = -1;
  uint64_t file_bytes_ = 0;
  std::vector<CheckpointSection> sections_;
};

}  // namespace dp
