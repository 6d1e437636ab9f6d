// IDX (MNIST) files, raw or gzip: read_idx on one file, or IdxDataset::load on an images and a
// labels file when the input holds the separator kLabels between the two.
#include <cstring>

#include "runtime/data/idx.h"
#include "tests/fuzz/fuzz.h"

namespace dp::fuzz {

namespace {

constexpr std::string_view kLabels = "\n--labels--\n";

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::vector<uint8_t> out;
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    uint8_t buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
      out.insert(out.end(), buf, buf + n);
    std::fclose(f);
  }
  return out;
}

}  // namespace

void fuzz_one(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t sep = in.find(kLabels);
  if (sep == std::string_view::npos) {
    const std::string path = write_scratch("one-idx", data, size);
    try {
      read_idx(path);
    } catch (const Error& e) {
      require_file_and_position(e, path, "byte ");
      throw;
    }
    return;
  }
  write_scratch("train-images-idx3-ubyte", data, sep);
  write_scratch("train-labels-idx1-ubyte", data + sep + kLabels.size(),
                size - sep - kLabels.size());
  try {
    IdxDataset ds = IdxDataset::load(scratch_dir(), "train");
    std::vector<float> x(ds.sample_numel());
    ds.get(ds.size() - 1, x.data());
  } catch (const Error& e) {
    // A problem of all pixels together has no position.
    require_file_and_position(e, scratch_dir() + "/train-", "byte ", {"cannot normalise"});
    throw;
  }
}

void write_seeds(const std::string& dir) {
  const std::vector<uint8_t> px = {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110};
  const std::vector<uint8_t> labels = {3, 1, 4};
  for (bool gzip : {false, true}) {
    const std::string images = scratch_dir() + "/images", lab = scratch_dir() + "/labels";
    write_idx_ubyte(images, {3, 2, 2}, px, gzip);
    write_idx_ubyte(lab, {3}, labels, gzip);
    std::vector<uint8_t> both = file_bytes(images), l = file_bytes(lab);
    const std::string suffix = gzip ? "-gz" : "";
    write_file(dir + "/images" + suffix, both.data(), both.size());
    both.insert(both.end(), kLabels.begin(), kLabels.end());
    both.insert(both.end(), l.begin(), l.end());
    write_file(dir + "/dataset" + suffix, both.data(), both.size());
  }
  write_idx(dir + "/floats", IdxType::f32, {2}, {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40}, false);
  write_idx(dir + "/shorts", IdxType::i16, {2, 1}, {0, 1, 0xff, 0xfe}, false);
}

}  // namespace dp::fuzz
