#include "runtime/data/idx.h"

#include <zlib.h>

#include <sys/stat.h>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "runtime/core/error.h"

namespace dp {

namespace {

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  DP_CHECK(in, "cannot open '{}' for reading", path);
  std::streamoff size = in.tellg();
  DP_CHECK(size >= 0, "cannot determine the size of '{}'", path);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0) in.read(reinterpret_cast<char*>(bytes.data()), size);
  DP_CHECK(in.good() || (size == 0), "error reading '{}'", path);
  return bytes;
}

bool has_gzip_magic(const std::vector<uint8_t>& b, size_t at = 0) {
  return b.size() >= at + 2 && b[at] == 0x1f && b[at + 1] == 0x8b;
}

// Inflates every gzip member of `in`; anything else after the last member is an error, as a
// truncated or damaged stream is: a partial data set would otherwise train silently.
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& path) {
  std::vector<uint8_t> out;
  // The gzip trailer holds the uncompressed size mod 2^32: a good first guess for a single
  // member, capped by deflate's best ratio (about 1032:1) so that a damaged or truncated
  // file's "trailer" cannot make us allocate gigabytes up front.
  if (in.size() >= 18) {
    size_t n = in.size();
    uint32_t isize = uint32_t(in[n - 4]) | uint32_t(in[n - 3]) << 8 | uint32_t(in[n - 2]) << 16 |
                     uint32_t(in[n - 1]) << 24;
    out.resize(std::max<size_t>(4096, std::min<size_t>({isize, n * 1032, size_t{1} << 30})));
  } else {
    out.resize(4096);
  }
  z_stream zs{};
  DP_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, "zlib: inflateInit2 failed for '{}'", path);
  struct Guard {
    z_stream* z;
    ~Guard() { inflateEnd(z); }
  } guard{&zs};
  size_t consumed = 0, produced = 0;
  constexpr size_t kChunk = size_t{1} << 30;  // z_stream counts in 32-bit uInt
  for (;;) {
    if (produced == out.size()) out.resize(out.size() * 2);
    zs.next_in = const_cast<Bytef*>(in.data() + consumed);
    zs.avail_in = static_cast<uInt>(std::min(in.size() - consumed, kChunk));
    zs.next_out = out.data() + produced;
    zs.avail_out = static_cast<uInt>(std::min(out.size() - produced, kChunk));
    uInt in_before = zs.avail_in, out_before = zs.avail_out;
    int rc = inflate(&zs, Z_NO_FLUSH);
    consumed += in_before - zs.avail_in;
    produced += out_before - zs.avail_out;
    if (rc == Z_STREAM_END) {
      if (consumed == in.size()) break;
      DP_CHECK(has_gzip_magic(in, consumed),
               "IDX file '{}': byte {}: {} unexpected bytes after the end of the gzip stream "
               "(trailing garbage)",
               path, consumed, in.size() - consumed);
      DP_CHECK(inflateReset(&zs) == Z_OK, "zlib: inflateReset failed for '{}'", path);
      continue;
    }
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && consumed == in.size())
      fail(
          "IDX file '{}': byte {}: the gzip stream is truncated (the file ends here, after {} "
          "bytes decompressed)",
          path, in.size(), produced);
    if (rc == Z_BUF_ERROR) continue;
    fail("IDX file '{}': byte {}: corrupt gzip data ({})", path, consumed,
         zs.msg ? zs.msg : "zlib error " + std::to_string(rc));
  }
  out.resize(produced);
  return out;
}

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

void put_be32(std::vector<uint8_t>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

}  // namespace

size_t idx_type_size(uint8_t code) {
  switch (code) {
    case 0x08:
    case 0x09:
      return 1;
    case 0x0B:
      return 2;
    case 0x0C:
    case 0x0D:
      return 4;
    case 0x0E:
      return 8;
    default:
      return 0;
  }
}

const char* idx_type_name(uint8_t code) {
  switch (code) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "short";
    case 0x0C:
      return "int";
    case 0x0D:
      return "float";
    case 0x0E:
      return "double";
    default:
      return "unknown";
  }
}

std::string resolve_idx_path(const std::string& path) {
  std::string gz = path + ".gz";
  if (is_regular_file(path)) return path;
  if (is_regular_file(gz)) return gz;
  // Something that is there but cannot be read as a file is named for what it is: "not found"
  // sent the user looking for a file that exists.
  for (const std::string& p : {path, gz}) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) continue;
    DP_CHECK(!S_ISDIR(st.st_mode), "IDX file '{}': is a directory, not an IDX file", p);
    fail("IDX file '{}': is not a regular file (a {}), so not an IDX file", p,
         S_ISFIFO(st.st_mode)   ? "FIFO"
         : S_ISSOCK(st.st_mode) ? "socket"
                                : "device");
  }
  fail("IDX file not found: looked for '{}' and '{}.gz'", path, path);
}

std::string idx_where(const std::string& path, bool decompressed, size_t byte) {
  return fmt::format("IDX file '{}': byte {}{}", path, byte,
                     decompressed ? " of the decompressed data" : "");
}

IdxArray parse_idx(std::vector<uint8_t> bytes, const std::string& path, bool decompressed) {
  auto at = [&](size_t byte) { return idx_where(path, decompressed, byte); };
  DP_CHECK(bytes.size() >= 4,
           "{}: truncated IDX file: {} bytes, too short for the 4-byte magic number",
           at(bytes.size()), bytes.size());
  const uint32_t magic = be32(bytes.data());
  DP_CHECK(bytes[0] == 0 && bytes[1] == 0,
           "{}: bad magic number 0x{:08X} (an IDX file starts with two zero bytes, a type code "
           "and the number of dimensions, e.g. 0x00000803 for uint8 images)",
           at(bytes[0] != 0 ? 0 : 1), magic);
  IdxArray a;
  a.path = path;
  a.decompressed = decompressed;
  a.type = bytes[2];
  const size_t elem = idx_type_size(a.type);
  DP_CHECK(elem != 0,
           "{}: unsupported IDX type code 0x{:02X} in magic number 0x{:08X} (expected 0x08 "
           "ubyte, 0x09 byte, 0x0B short, 0x0C int, 0x0D float or 0x0E double)",
           at(2), a.type, magic);
  const size_t ndims = bytes[3];
  DP_CHECK(ndims >= 1, "{}: magic number 0x{:08X} declares 0 dimensions", at(3), magic);
  const size_t header = 4 + 4 * ndims;
  DP_CHECK(bytes.size() >= header,
           "{}: truncated IDX header: {} dimensions need {} header bytes, the file has {}",
           at(bytes.size()), ndims, header, bytes.size());
  size_t expected = elem;
  for (size_t d = 0; d < ndims; ++d) {
    uint32_t v = be32(bytes.data() + 4 + 4 * d);
    a.dims.push_back(v);
    DP_CHECK(v == 0 || expected <= std::numeric_limits<size_t>::max() / v,
             "{}: dimensions {} overflow the addressable size", at(4 + 4 * d),
             fmt::join(a.dims, " x "));
    expected *= v;
  }
  const size_t have = bytes.size() - header;
  DP_CHECK(have >= expected,
           "{}: truncated IDX file: dimensions {} of {} need {} payload bytes, found {}",
           at(bytes.size()), fmt::join(a.dims, " x "), idx_type_name(a.type), expected, have);
  DP_CHECK(have == expected,
           "{}: trailing garbage: dimensions {} of {} need {} payload bytes, found {} ({} extra)",
           at(header + expected), fmt::join(a.dims, " x "), idx_type_name(a.type), expected, have,
           have - expected);
  bytes.erase(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(header));
  a.payload = std::move(bytes);
  return a;
}

IdxArray read_idx(const std::string& path) {
  const std::string file = resolve_idx_path(path);
  std::vector<uint8_t> bytes = read_file(file);
  const bool gzip = has_gzip_magic(bytes);
  if (gzip) bytes = gunzip(bytes, file);
  return parse_idx(std::move(bytes), file, gzip);
}

void write_idx(const std::string& path, IdxType type, const std::vector<uint32_t>& dims,
               const std::vector<uint8_t>& payload, bool gzip) {
  const uint8_t code = static_cast<uint8_t>(type);
  DP_CHECK(!dims.empty() && dims.size() <= 255, "write_idx '{}': {} dimensions (need 1..255)", path,
           dims.size());
  size_t expected = idx_type_size(code);
  for (uint32_t d : dims) expected *= d;
  DP_CHECK(expected == payload.size(),
           "write_idx '{}': dimensions {} of {} need {} payload bytes, got {}", path,
           fmt::join(dims, " x "), idx_type_name(code), expected, payload.size());
  std::vector<uint8_t> bytes = {0, 0, code, static_cast<uint8_t>(dims.size())};
  bytes.reserve(4 + 4 * dims.size() + payload.size());
  for (uint32_t d : dims) put_be32(bytes, d);
  bytes.insert(bytes.end(), payload.begin(), payload.end());
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    DP_CHECK(f != nullptr, "cannot open '{}' for writing", path);
    size_t done = 0;
    while (done < bytes.size()) {
      unsigned chunk = static_cast<unsigned>(std::min<size_t>(bytes.size() - done, 1u << 30));
      int w = gzwrite(f, bytes.data() + done, chunk);
      if (w <= 0) {
        gzclose(f);
        fail("error writing gzip data to '{}'", path);
      }
      done += static_cast<size_t>(w);
    }
    DP_CHECK(gzclose(f) == Z_OK, "error closing '{}' (disk full?)", path);
  } else {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    DP_CHECK(out, "cannot open '{}' for writing", path);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    out.close();
    DP_CHECK(out.good(), "error writing '{}' (disk full?)", path);
  }
}

void write_idx_ubyte(const std::string& path, const std::vector<uint32_t>& dims,
                     const std::vector<uint8_t>& bytes, bool gzip) {
  write_idx(path, IdxType::u8, dims, bytes, gzip);
}

std::pair<std::string, std::string> idx_split_files(const std::string& dir,
                                                    const std::string& split) {
  const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  return {base + split + "-images-idx3-ubyte", base + split + "-labels-idx1-ubyte"};
}

IdxDataset IdxDataset::load(const std::string& dir, const std::string& split,
                            std::optional<Normalization> norm, int num_classes) {
  DP_CHECK(is_directory(dir), "data directory '{}' does not exist (or is not a directory)", dir);
  const auto [images_path, labels_path] = idx_split_files(dir, split);
  IdxArray images = read_idx(images_path);
  IdxArray labels = read_idx(labels_path);
  return from_arrays(std::move(images), std::move(labels), norm, num_classes);
}

IdxDataset IdxDataset::from_arrays(IdxArray images, IdxArray labels,
                                   std::optional<Normalization> norm, int num_classes) {
  DP_CHECK(num_classes >= 1 && num_classes <= 256,
           "IDX dataset: num_classes must be in 1..256 (labels are bytes), got {}", num_classes);
  DP_CHECK(images.type == static_cast<uint8_t>(IdxType::u8),
           "{}: images must be unsigned bytes (type 0x08), found type 0x{:02X} ({})",
           idx_where(images, 2), images.type, idx_type_name(images.type));
  DP_CHECK(images.dims.size() == 3,
           "{}: images must have 3 dimensions [count, rows, cols], found {} ([{}])",
           idx_where(images, 3), images.dims.size(), fmt::join(images.dims, ", "));
  DP_CHECK(labels.type == static_cast<uint8_t>(IdxType::u8),
           "{}: labels must be unsigned bytes (type 0x08), found type 0x{:02X} ({})",
           idx_where(labels, 2), labels.type, idx_type_name(labels.type));
  DP_CHECK(labels.dims.size() == 1, "{}: labels must have 1 dimension [count], found {} ([{}])",
           idx_where(labels, 3), labels.dims.size(), fmt::join(labels.dims, ", "));
  DP_CHECK(images.dims[0] == labels.dims[0],
           "{}: label count does not match image count: '{}' has {} labels, '{}' has {} images",
           idx_where(labels, 4), labels.path, labels.dims[0], images.path, images.dims[0]);
  DP_CHECK(images.dims[0] > 0, "{}: the dataset is empty (0 images)", idx_where(images, 4));
  DP_CHECK(images.dims[1] > 0 && images.dims[2] > 0, "{}: images of size {}x{}",
           idx_where(images, images.dims[1] == 0 ? 8 : 12), images.dims[1], images.dims[2]);
  for (size_t i = 0; i < labels.payload.size(); ++i) {
    DP_CHECK(labels.payload[i] < num_classes,
             "{}: label {} of sample {} is out of range (num_classes is {}, labels must be "
             "0..{})",
             idx_where(labels, labels.payload_offset(i)), labels.payload[i], i, num_classes,
             num_classes - 1);
  }
  IdxDataset ds;
  ds.source_ = images.path;
  ds.n_ = images.dims[0];
  ds.rows_ = images.dims[1];
  ds.cols_ = images.dims[2];
  ds.num_classes_ = num_classes;
  ds.pixels_ = std::move(images.payload);
  ds.labels_ = std::move(labels.payload);
  ds.norm_ = norm ? *norm : ds.compute_normalization();
  DP_CHECK(std::isfinite(ds.norm_.mean) && std::isfinite(ds.norm_.std) && ds.norm_.std > 0,
           "'{}': cannot normalise with mean {} and std {} (std must be > 0: are all pixels "
           "equal?)",
           ds.source_, ds.norm_.mean, ds.norm_.std);
  ds.scale_ = static_cast<float>(1.0 / (255.0 * ds.norm_.std));
  ds.shift_ = static_cast<float>(-ds.norm_.mean / ds.norm_.std);
  return ds;
}

std::pair<IdxDataset, IdxDataset> IdxDataset::load_train_test(const std::string& dir,
                                                              const std::string& train_split,
                                                              const std::string& test_split) {
  // Every byte label is accepted here; the class count is narrowed to the data's below.
  IdxDataset train = load(dir, train_split, std::nullopt, 256);
  IdxDataset test = load(dir, test_split, train.normalization(), 256);
  // The model is built for the training split's images: a test split of another size would
  // be evaluated on misread pixels, or fail in a layer after training.
  DP_CHECK(test.rows_ == train.rows_ && test.cols_ == train.cols_,
           "the test images '{}' are {}x{} but the training images '{}' are {}x{}: both splits "
           "must hold images of one size",
           test.source_, test.rows_, test.cols_, train.source_, train.rows_, train.cols_);
  const int classes = std::max(train.max_label(), test.max_label()) + 1;
  train.num_classes_ = classes;
  test.num_classes_ = classes;
  return {std::move(train), std::move(test)};
}

int IdxDataset::max_label() const {
  return labels_.empty() ? 0 : *std::max_element(labels_.begin(), labels_.end());
}

Normalization IdxDataset::compute_normalization() const {
  return dp::compute_normalization(pixels_.data(), pixels_.size());
}

int32_t IdxDataset::get(size_t i, float* dst) const {
  DP_CHECK(i < n_, "IDX dataset '{}': sample {} out of range ({} samples)", source_, i, n_);
  const size_t numel = rows_ * cols_;
  const uint8_t* p = pixels_.data() + i * numel;
  // A multiply-add the compiler vectorises (a table lookup per byte does not): the data
  // loader shares the rank's core with backward, so its cost is training time.
  for (size_t k = 0; k < numel; ++k) dst[k] = static_cast<float>(p[k]) * scale_ + shift_;
  return labels_[i];
}

std::string IdxDataset::describe() const {
  return fmt::format(
      "IDX '{}': {} samples of {}x{}, {} classes, normalised with mean {:.4f} std "
      "{:.4f}",
      source_, n_, rows_, cols_, num_classes_, norm_.mean, norm_.std);
}

}  // namespace dp
