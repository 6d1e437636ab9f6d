#pragma once
// CIFAR-10, binary version (https://www.cs.toronto.edu/~kriz/cifar.html): training split
// data_batch_1.bin .. data_batch_5.bin, test split test_batch.bin, in one directory (the
// archive's cifar-10-batches-bin/, or a directory that contains it). Each file is a
// sequence of 3073-byte records: 1 label byte (0..9), then 3072 pixel bytes, the 1024 red,
// 1024 green and 1024 blue values of a 32x32 image in row-major order, which is already
// the {C, H, W} layout a sample has. 10000 records per file in the real data set; any whole
// number of records is accepted (small files in tests).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/data/dataset.h"
#include "runtime/data/normalization.h"

namespace dp {

constexpr size_t kCifarChannels = 3, kCifarSide = 32;
constexpr size_t kCifarPixels = kCifarChannels * kCifarSide * kCifarSide;  // 3072
constexpr size_t kCifarRecordBytes = 1 + kCifarPixels;                     // 3073
constexpr int kCifarClasses = 10;

// Per channel (R, G, B), in units of pixel / 255.
using ChannelNormalization = std::array<Normalization, kCifarChannels>;

enum class Cifar10Split { train, test };

// The files of one split in `dir` (data_batch_1.bin .. data_batch_5.bin, or test_batch.bin).
std::vector<std::string> cifar10_split_files(const std::string& dir, Cifar10Split split);

// `dir` itself when it holds data_batch_1.bin or test_batch.bin, else
// `dir`/cifar-10-batches-bin when that is a directory; dp::Error otherwise.
std::string resolve_cifar10_dir(const std::string& dir);

// Writes one file of records (labels[i], pixels[i * 3072, (i + 1) * 3072)): for tests and
// tools. pixels.size() must be 3072 * labels.size().
void write_cifar10_file(const std::string& path, const std::vector<uint8_t>& labels,
                        const std::vector<uint8_t>& pixels);

// Pixels stay uint8 in memory (150 MB for the training split instead of 600 MB as float)
// and are normalised per channel in get().
class Cifar10Dataset : public ClassificationDataset {
 public:
  // Without `norm` the split's own per-channel statistics are used: right for the training
  // split; for the test split pass train.normalization(). Throws dp::Error naming the file
  // on: a missing file, a size that is not a whole number of 3073-byte records (or 0), a
  // label > 9.
  static Cifar10Dataset load(const std::string& dir, Cifar10Split split,
                             std::optional<ChannelNormalization> norm = std::nullopt);
  // The same from an explicit list of files, read in order.
  static Cifar10Dataset load_files(const std::vector<std::string>& files,
                                   std::optional<ChannelNormalization> norm = std::nullopt);

  size_t size() const override { return labels_.size(); }
  DataKind kind() const override { return DataKind::images; }
  Shape sample_shape() const override {
    return {int64_t(kCifarChannels), int64_t(kCifarSide), int64_t(kCifarSide)};
  }
  size_t sample_numel() const override { return kCifarPixels; }
  int num_classes() const override { return kCifarClasses; }
  int32_t get(size_t i, float* dst) const override;
  std::string describe() const override;

  // The normalisation get() applies.
  const ChannelNormalization& normalization() const { return norm_; }
  // This split's own per-channel statistics (what load() uses when given none).
  ChannelNormalization compute_normalization() const;
  // Raw access, for tests and tools.
  const uint8_t* pixels(size_t i) const { return pixels_.data() + i * kCifarPixels; }
  int32_t label(size_t i) const { return labels_[i]; }

 private:
  Cifar10Dataset() = default;

  std::string source_;
  std::vector<uint8_t> pixels_;  // [n, 3, 32, 32]
  std::vector<uint8_t> labels_;  // [n]
  ChannelNormalization norm_;
  // get(): (byte / 255 - mean[c]) / std[c] = byte * scale_[c] + shift_[c]
  std::array<float, kCifarChannels> scale_{}, shift_{};
};

}  // namespace dp
