#include "runtime/data/cifar10.h"

#include <sys/stat.h>

#include <cmath>
#include <fstream>

#include <fmt/format.h>

#include "runtime/core/error.h"

namespace dp {

namespace {

constexpr const char* kLayout =
    "the binary CIFAR-10 has data_batch_1.bin .. data_batch_5.bin and test_batch.bin";

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string join(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

// Appends the records of one file to labels and pixels.
void read_records(const std::string& path, std::vector<uint8_t>& labels,
                  std::vector<uint8_t>& pixels) {
  DP_CHECK(is_regular_file(path), "CIFAR-10 file '{}' not found ({})", path, kLayout);
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  DP_CHECK(in, "CIFAR-10 file '{}': cannot open it for reading", path);
  const std::streamoff end = in.tellg();
  DP_CHECK(end >= 0, "CIFAR-10 file '{}': cannot determine its size", path);
  const size_t bytes = static_cast<size_t>(end);
  DP_CHECK(bytes > 0, "CIFAR-10 file '{}': byte 0: the file is empty", path);
  DP_CHECK(bytes % kCifarRecordBytes == 0,
           "CIFAR-10 file '{}': byte {}: {} bytes is not a whole number of {}-byte records (1 "
           "label + 3072 pixels): {} records and {} bytes left over (truncated or not CIFAR-10 "
           "binary?)",
           path, bytes - bytes % kCifarRecordBytes, bytes, kCifarRecordBytes,
           bytes / kCifarRecordBytes, bytes % kCifarRecordBytes);
  std::vector<uint8_t> buf(bytes);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(bytes));
  DP_CHECK(in.good(), "CIFAR-10 file '{}': error reading {} bytes", path, bytes);
  const size_t n = bytes / kCifarRecordBytes;
  labels.reserve(labels.size() + n);
  pixels.reserve(pixels.size() + n * kCifarPixels);
  for (size_t r = 0; r < n; ++r) {
    const uint8_t* rec = buf.data() + r * kCifarRecordBytes;
    DP_CHECK(rec[0] < kCifarClasses,
             "CIFAR-10 file '{}': byte {}: record {} has label {}, outside 0..9 (is this "
             "CIFAR-100, whose records have two label bytes?)",
             path, r * kCifarRecordBytes, r, rec[0]);
    labels.push_back(rec[0]);
    pixels.insert(pixels.end(), rec + 1, rec + kCifarRecordBytes);
  }
}

}  // namespace

std::vector<std::string> cifar10_split_files(const std::string& dir, Cifar10Split split) {
  if (split == Cifar10Split::test) return {join(dir, "test_batch.bin")};
  std::vector<std::string> files;
  for (int k = 1; k <= 5; ++k) files.push_back(join(dir, fmt::format("data_batch_{}.bin", k)));
  return files;
}

std::string resolve_cifar10_dir(const std::string& dir) {
  DP_CHECK(is_directory(dir), "CIFAR-10 directory '{}' does not exist (or is not a directory)",
           dir);
  auto holds_files = [](const std::string& d) {
    return is_regular_file(join(d, "data_batch_1.bin")) ||
           is_regular_file(join(d, "test_batch.bin"));
  };
  if (holds_files(dir)) return dir;
  std::string nested = join(dir, "cifar-10-batches-bin");
  if (is_directory(nested)) return nested;
  fail("'{}' holds no CIFAR-10 binary files, directly or in cifar-10-batches-bin/ ({})", dir,
       kLayout);
}

void write_cifar10_file(const std::string& path, const std::vector<uint8_t>& labels,
                        const std::vector<uint8_t>& pixels) {
  DP_CHECK(pixels.size() == labels.size() * kCifarPixels,
           "write_cifar10_file '{}': {} labels need {} pixel bytes, got {}", path, labels.size(),
           labels.size() * kCifarPixels, pixels.size());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  DP_CHECK(out, "cannot open '{}' for writing", path);
  for (size_t i = 0; i < labels.size(); ++i) {
    out.put(static_cast<char>(labels[i]));
    out.write(reinterpret_cast<const char*>(pixels.data() + i * kCifarPixels), kCifarPixels);
  }
  out.close();
  DP_CHECK(out.good(), "error writing '{}' (disk full?)", path);
}

Cifar10Dataset Cifar10Dataset::load(const std::string& dir, Cifar10Split split,
                                    std::optional<ChannelNormalization> norm) {
  return load_files(cifar10_split_files(resolve_cifar10_dir(dir), split), norm);
}

Cifar10Dataset Cifar10Dataset::load_files(const std::vector<std::string>& files,
                                          std::optional<ChannelNormalization> norm) {
  DP_CHECK(!files.empty(), "CIFAR-10: no files to read");
  Cifar10Dataset ds;
  // Check every file exists before reading any: a missing data_batch_5.bin is reported
  // at once, not after reading 120 MB.
  // The whole set's room is reserved once: growing per file reallocated the pixels with the
  // old copy alongside (a 184 MB training set peaked at 434 MiB against 239 steady).
  size_t records = 0;
  for (const std::string& f : files) {
    DP_CHECK(is_regular_file(f), "CIFAR-10 file '{}' not found ({})", f, kLayout);
    struct stat st {};
    if (::stat(f.c_str(), &st) == 0) records += size_t(st.st_size) / kCifarRecordBytes;
  }
  ds.labels_.reserve(records);
  ds.pixels_.reserve(records * kCifarPixels);
  for (const std::string& f : files) read_records(f, ds.labels_, ds.pixels_);
  ds.source_ = files.size() == 1 ? files[0] : fmt::format("{} .. {}", files.front(), files.back());
  ds.norm_ = norm ? *norm : ds.compute_normalization();
  for (size_t c = 0; c < kCifarChannels; ++c) {
    const Normalization& n = ds.norm_[c];
    DP_CHECK(std::isfinite(n.mean) && std::isfinite(n.std) && n.std > 0,
             "CIFAR-10 '{}': cannot normalise channel {} with mean {} and std {} (std must be > "
             "0: are all its pixels equal?)",
             ds.source_, c, n.mean, n.std);
    ds.scale_[c] = static_cast<float>(1.0 / (255.0 * n.std));
    ds.shift_[c] = static_cast<float>(-n.mean / n.std);
  }
  return ds;
}

ChannelNormalization Cifar10Dataset::compute_normalization() const {
  constexpr size_t plane = kCifarSide * kCifarSide;
  std::array<PixelHistogram, kCifarChannels> hist{};
  for (size_t i = 0; i < labels_.size(); ++i)
    for (size_t c = 0; c < kCifarChannels; ++c) {
      const uint8_t* p = pixels(i) + c * plane;
      for (size_t k = 0; k < plane; ++k) ++hist[c][p[k]];
    }
  ChannelNormalization norm;
  for (size_t c = 0; c < kCifarChannels; ++c) norm[c] = normalization_from_histogram(hist[c]);
  return norm;
}

int32_t Cifar10Dataset::get(size_t i, float* dst) const {
  DP_CHECK(i < labels_.size(), "CIFAR-10 '{}': sample {} out of range ({} samples)", source_, i,
           labels_.size());
  constexpr size_t plane = kCifarSide * kCifarSide;
  const uint8_t* p = pixels(i);
  // One multiply-add per pixel and channel plane, which the compiler vectorises.
  for (size_t c = 0; c < kCifarChannels; ++c) {
    const float s = scale_[c], b = shift_[c];
    for (size_t k = 0; k < plane; ++k)
      dst[c * plane + k] = static_cast<float>(p[c * plane + k]) * s + b;
  }
  return labels_[i];
}

std::string Cifar10Dataset::describe() const {
  return fmt::format(
      "CIFAR-10 '{}': {} images of 3x32x32, 10 classes, normalised with mean ({:.4f}, {:.4f}, "
      "{:.4f}) std ({:.4f}, {:.4f}, {:.4f})",
      source_, labels_.size(), norm_[0].mean, norm_[1].mean, norm_[2].mean, norm_[0].std,
      norm_[1].std, norm_[2].std);
}

}  // namespace dp
