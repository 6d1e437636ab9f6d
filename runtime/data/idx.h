#pragma once
// The IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/): a 4-byte
// magic 0x00 0x00 <type> <ndims>, ndims big-endian uint32 dimensions, then the elements in
// row-major order, big-endian. Files are read raw or gzip-compressed (detected by the gzip
// magic, not by the name), and `name` falls back to `name.gz` when only that exists.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/data/dataset.h"
#include "runtime/data/normalization.h"

namespace dp {

// Type codes of the IDX format.
enum class IdxType : uint8_t {
  u8 = 0x08,
  i8 = 0x09,
  i16 = 0x0B,
  i32 = 0x0C,
  f32 = 0x0D,
  f64 = 0x0E
};
// Bytes per element of a type code; 0 for a code the format does not define.
size_t idx_type_size(uint8_t code);
// "unsigned byte", "float", ... or "unknown".
const char* idx_type_name(uint8_t code);

struct IdxArray {
  std::string path;  // the file actually read (may end in .gz)
  uint8_t type = static_cast<uint8_t>(IdxType::u8);
  std::vector<uint32_t> dims;
  std::vector<uint8_t> payload;  // the elements as stored (big-endian for multi-byte types)
  bool decompressed = false;     // read from gzip: error positions count decompressed bytes
  // Where payload element `i` lies in the file, for error messages.
  size_t payload_offset(size_t i) const { return 4 + 4 * dims.size() + i * idx_type_size(type); }
};

// "IDX file 'PATH': byte N" (+ " of the decompressed data"): how every IDX error starts, so
// that it names the file and where in it the problem is.
std::string idx_where(const std::string& path, bool decompressed, size_t byte);
inline std::string idx_where(const IdxArray& a, size_t byte) {
  return idx_where(a.path, a.decompressed, byte);
}

// The images and the labels file of `split` ("train", "t10k") in `dir`, before the .gz
// fallback (resolve_idx_path).
std::pair<std::string, std::string> idx_split_files(const std::string& dir,
                                                    const std::string& split);

// `path` if it is a regular file, else `path`.gz if that is; otherwise dp::Error naming what is
// there instead (a directory, a FIFO, a device), or both names when neither exists.
std::string resolve_idx_path(const std::string& path);
// Reads and validates one IDX file (see resolve_idx_path for the .gz fallback). Throws
// dp::Error naming the file and the byte on: missing file, bad magic, unknown type code, no
// dimensions, truncated header or payload, bytes after the payload, a corrupt or truncated
// gzip stream.
IdxArray read_idx(const std::string& path);
// The same checks on an in-memory file, `decompressed` when it came out of gzip; `path` names
// it in errors.
IdxArray parse_idx(std::vector<uint8_t> bytes, const std::string& path, bool decompressed = false);

// Writes an IDX file at exactly `path` (gzip-compressed when `gzip`, whatever the name).
// The payload size must equal the product of dims times the element size.
void write_idx(const std::string& path, IdxType type, const std::vector<uint32_t>& dims,
               const std::vector<uint8_t>& payload, bool gzip);
void write_idx_ubyte(const std::string& path, const std::vector<uint32_t>& dims,
                     const std::vector<uint8_t>& bytes, bool gzip);

// `{split}-images-idx3-ubyte[.gz]` (uint8, [n, rows, cols]) with
// `{split}-labels-idx1-ubyte[.gz]` (uint8, [n]). Pixels stay uint8 in memory (47 MB for
// Fashion-MNIST's train split instead of 188 MB as float) and are normalised in get().
class IdxDataset : public ClassificationDataset {
 public:
  // split is "train" or "t10k" for (Fashion-)MNIST; any prefix of that file naming works.
  // Without `norm` the split's own pixel statistics are used: right for "train"; for "t10k"
  // pass train.normalization(). Labels must be < num_classes (1..256), else dp::Error.
  static IdxDataset load(const std::string& dir, const std::string& split,
                         std::optional<Normalization> norm = std::nullopt, int num_classes = 10);
  // The same validation on arrays already in memory (images [n, rows, cols], labels [n]).
  static IdxDataset from_arrays(IdxArray images, IdxArray labels,
                                std::optional<Normalization> norm = std::nullopt,
                                int num_classes = 10);
  // The `train` and `test` splits of `dir` as --data idx:DIR uses them, checked against each
  // other: images of one size, else dp::Error naming both files and sizes. IDX files hold no
  // class count, so it is the data's: the largest label of either split + 1, the same for
  // both. The test split is normalised with the training split's statistics.
  static std::pair<IdxDataset, IdxDataset> load_train_test(const std::string& dir,
                                                           const std::string& train = "train",
                                                           const std::string& test = "t10k");

  size_t size() const override { return n_; }
  DataKind kind() const override { return DataKind::images; }
  // One grey channel: {1, rows, cols}, the layout a CNN takes (an MLP uses sample_numel()).
  Shape sample_shape() const override {
    return {1, static_cast<int64_t>(rows_), static_cast<int64_t>(cols_)};
  }
  size_t sample_numel() const override { return rows_ * cols_; }
  int num_classes() const override { return num_classes_; }
  int32_t get(size_t i, float* dst) const override;
  std::string describe() const override;

  size_t rows() const { return rows_; }
  // The images file read (may end in .gz).
  const std::string& source() const { return source_; }
  // The largest label in this split.
  int max_label() const;
  size_t cols() const { return cols_; }
  // The normalisation get() applies.
  const Normalization& normalization() const { return norm_; }
  // This split's own pixel statistics (what load() uses when given no normalisation).
  Normalization compute_normalization() const;
  // Raw access, for tests and tools.
  const uint8_t* pixels(size_t i) const { return pixels_.data() + i * rows_ * cols_; }
  int32_t label(size_t i) const { return labels_[i]; }

 private:
  IdxDataset() = default;

  std::string source_;
  size_t n_ = 0, rows_ = 0, cols_ = 0;
  int num_classes_ = 10;
  std::vector<uint8_t> pixels_;
  std::vector<uint8_t> labels_;
  Normalization norm_;
  float scale_ = 1, shift_ = 0;  // get(): (byte / 255 - mean) / std = byte * scale_ + shift_
};

}  // namespace dp
