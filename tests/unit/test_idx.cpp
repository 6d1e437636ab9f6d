#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <sys/stat.h>

#include "runtime/core/error.h"
#include "runtime/data/idx.h"
#include "tests/support/temp_dir.h"

using namespace dp;
namespace fs = std::filesystem;

namespace {

class IdxTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dprun_idx_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  static std::vector<uint8_t> header(uint8_t type, const std::vector<uint32_t>& dims) {
    std::vector<uint8_t> b = {0, 0, type, uint8_t(dims.size())};
    for (uint32_t d : dims)
      for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(d >> s));
    return b;
  }
  void write_raw(const std::string& name, const std::vector<uint8_t>& bytes) {
    std::ofstream out(path(name), std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  }
  std::vector<uint8_t> read_raw(const std::string& name) {
    std::ifstream in(path(name), std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
  }

  // n images of 2x3 with pixel (i, k) = 10 i + k, labels i % classes.
  void write_set(const std::string& split, uint32_t n, bool gzip, int classes = 10) {
    std::vector<uint8_t> px, lab;
    for (uint32_t i = 0; i < n; ++i) {
      for (uint32_t k = 0; k < 6; ++k) px.push_back(uint8_t(10 * i + k));
      lab.push_back(uint8_t(i % classes));
    }
    const std::string gz = gzip ? ".gz" : "";
    write_idx_ubyte(path(split + "-images-idx3-ubyte" + gz), {n, 2, 3}, px, gzip);
    write_idx_ubyte(path(split + "-labels-idx1-ubyte" + gz), {n}, lab, gzip);
  }

  // The dp::Error message of loading this directory's "train" split.
  std::string load_error(int classes = 10) {
    try {
      IdxDataset::load(dir_, "train", std::nullopt, classes);
    } catch (const Error& e) {
      return e.what();
    }
    return "<no dp::Error thrown>";
  }
  std::string read_error(const std::string& name) {
    try {
      read_idx(path(name));
    } catch (const Error& e) {
      return e.what();
    }
    return "<no dp::Error thrown>";
  }

  std::string dir_;
};

}  // namespace

TEST_F(IdxTest, RoundTripRawAndGzip) {
  std::vector<uint8_t> px(4 * 5 * 7);
  for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t(i * 37);
  for (bool gzip : {false, true}) {
    const std::string name = gzip ? "a.idx.gz" : "a.idx";
    write_idx_ubyte(path(name), {4, 5, 7}, px, gzip);
    auto bytes = read_raw(name);
    ASSERT_GE(bytes.size(), 2u);
    EXPECT_EQ(bytes[0] == 0x1f && bytes[1] == 0x8b, gzip);
    IdxArray a = read_idx(path(name));
    EXPECT_EQ(a.path, path(name));
    EXPECT_EQ(a.type, 0x08);
    EXPECT_EQ(a.dims, (std::vector<uint32_t>{4, 5, 7}));
    EXPECT_EQ(a.payload, px);
  }
  // Without the .gz on disk under the plain name, the plain name falls back to name.gz.
  write_idx_ubyte(path("b.gz"), {140}, px, true);
  IdxArray b = read_idx(path("b"));
  EXPECT_EQ(b.path, path("b.gz"));
  EXPECT_EQ(b.payload, px);
  // Multi-byte types keep their big-endian payload.
  write_idx(path("f"), IdxType::f32, {2}, {0x3f, 0x80, 0, 0, 0x40, 0, 0, 0}, false);
  EXPECT_EQ(read_idx(path("f")).type, 0x0D);
  EXPECT_THROW(write_idx_ubyte(path("bad"), {2, 2}, {1, 2, 3}, false), Error);
}

TEST_F(IdxTest, LoadsDatasetRawAndGzipAndNormalises) {
  for (bool gzip : {false, true}) {
    write_set("train", 5, gzip);
    IdxDataset ds = IdxDataset::load(dir_, "train");
    EXPECT_EQ(ds.size(), 5u);
    EXPECT_EQ(ds.rows(), 2u);
    EXPECT_EQ(ds.cols(), 3u);
    EXPECT_EQ(ds.sample_shape(), (Shape{1, 2, 3}));
    EXPECT_EQ(ds.kind(), DataKind::images);
    EXPECT_EQ(ds.sample_numel(), 6u);
    EXPECT_EQ(ds.num_classes(), 10);
    // Mean and population std of the pixels 10 i + k.
    double sum = 0, sq = 0;
    for (int i = 0; i < 5; ++i)
      for (int k = 0; k < 6; ++k)
        sum += (10 * i + k) / 255.0, sq += std::pow((10 * i + k) / 255.0, 2);
    const double mean = sum / 30, sd = std::sqrt(sq / 30 - mean * mean);
    EXPECT_NEAR(ds.normalization().mean, mean, 1e-12);
    EXPECT_NEAR(ds.normalization().std, sd, 1e-12);
    float x[6];
    EXPECT_EQ(ds.get(3, x), 3);
    for (int k = 0; k < 6; ++k) EXPECT_NEAR(x[k], ((30 + k) / 255.0 - mean) / sd, 1e-5);
    EXPECT_EQ(ds.pixels(3)[2], 32);
    EXPECT_NE(ds.describe().find("5 samples of 2x3"), std::string::npos) << ds.describe();
    EXPECT_THROW(ds.get(5, x), Error);
    fs::remove(path(std::string("train-images-idx3-ubyte") + (gzip ? ".gz" : "")));
    fs::remove(path(std::string("train-labels-idx1-ubyte") + (gzip ? ".gz" : "")));
  }
}

TEST_F(IdxTest, TestSplitUsesTrainNormalization) {
  write_set("train", 8, true);
  write_set("t10k", 3, false);
  IdxDataset train = IdxDataset::load(dir_, "train");
  IdxDataset test = IdxDataset::load(dir_, "t10k", train.normalization());
  EXPECT_EQ(test.normalization().mean, train.normalization().mean);
  EXPECT_EQ(test.normalization().std, train.normalization().std);
  EXPECT_NE(test.compute_normalization().mean, train.normalization().mean);
  float x[6];
  test.get(0, x);
  EXPECT_NEAR(x[0], (0 - train.normalization().mean) / train.normalization().std, 1e-5);
  EXPECT_THROW(IdxDataset::load(dir_, "t10k", Normalization{0.5, 0.0}), Error);
}

TEST_F(IdxTest, MissingFilesNameWhatWasLookedFor) {
  std::string msg = load_error();
  EXPECT_MENTIONS(msg, "IDX file not found");
  EXPECT_MENTIONS(msg, path("train-images-idx3-ubyte"));
  EXPECT_MENTIONS(msg, path("train-images-idx3-ubyte") + ".gz");
  write_set("train", 3, false);
  fs::remove(path("train-labels-idx1-ubyte"));
  EXPECT_MENTIONS(load_error(), path("train-labels-idx1-ubyte"));
  try {
    IdxDataset::load(dir_ + "/nope", "train");
    FAIL() << "no error for a missing directory";
  } catch (const Error& e) {
    EXPECT_MENTIONS(std::string(e.what()), "does not exist");
    EXPECT_MENTIONS(std::string(e.what()), dir_ + "/nope");
  }
}

// A directory or a FIFO where the file should be was reported as "IDX file not found".
TEST_F(IdxTest, WhatIsNotAFileIsNamedForWhatItIs) {
  write_set("train", 3, false);
  const std::string images = path("train-images-idx3-ubyte");
  fs::remove(images);
  fs::create_directory(images);
  std::string e = load_error();
  EXPECT_MENTIONS(e, "IDX file '" + images + "': is a directory, not an IDX file");
  EXPECT_EQ(e.find("not found"), std::string::npos) << e;
  fs::remove(images);
  ASSERT_EQ(mkfifo(images.c_str(), 0600), 0);
  e = read_error("train-images-idx3-ubyte");
  EXPECT_MENTIONS(e, "IDX file '" + images + "': is not a regular file (a FIFO)");
  // Only the .gz is there, and it is a directory.
  fs::remove(images);
  fs::create_directory(images + ".gz");
  EXPECT_MENTIONS(load_error(), "IDX file '" + images + ".gz': is a directory");
  // A regular .gz is still taken when the plain name is something else.
  fs::remove(images + ".gz");
  write_set("train", 3, true);
  fs::create_directory(images);
  EXPECT_EQ(resolve_idx_path(images), images + ".gz");
}

TEST_F(IdxTest, BadMagic) {
  auto b = header(0x08, {2});
  b[0] = 0x12;
  b.push_back(1), b.push_back(2);
  write_raw("m", b);
  std::string msg = read_error("m");
  EXPECT_MENTIONS(msg, "IDX file '" + path("m") + "': byte 0: bad magic number 0x12000801");
  // A file that is not even gzip nor IDX, e.g. a text file.
  write_raw("t", {'h', 'e', 'l', 'l', 'o', '\n'});
  EXPECT_MENTIONS(read_error("t"), "bad magic number");
}

TEST_F(IdxTest, UnsupportedTypeCode) {
  auto b = header(0x07, {2});
  b.push_back(1), b.push_back(2);
  write_raw("u", b);
  EXPECT_MENTIONS(read_error("u"), "byte 2: unsupported IDX type code 0x07");
  // Valid IDX, but not bytes: the dataset refuses it.
  write_idx(path("train-images-idx3-ubyte"), IdxType::f32, {1, 1, 1}, {0, 0, 0, 0}, false);
  write_idx_ubyte(path("train-labels-idx1-ubyte"), {1}, {0}, false);
  EXPECT_MENTIONS(load_error(),
                  "byte 2: images must be unsigned bytes (type 0x08), found type 0x0D");
}

TEST_F(IdxTest, TruncatedHeaderAndPayload) {
  write_raw("e", {});
  EXPECT_MENTIONS(read_error("e"), "truncated");
  auto h = header(0x08, {3, 4});
  h.resize(9);
  write_raw("h", h);
  EXPECT_MENTIONS(read_error("h"), "byte 9: truncated IDX header");
  auto b = header(0x08, {3, 4});
  b.resize(b.size() + 11);
  write_raw("p", b);
  std::string msg = read_error("p");
  EXPECT_MENTIONS(msg, "byte 23: truncated IDX file");
  EXPECT_MENTIONS(msg, "need 12 payload bytes, found 11");
}

TEST_F(IdxTest, WrongDimsAndTrailingGarbage) {
  // The header declares 3x5 but 3x4 bytes follow: truncated from the header's point of view.
  auto b = header(0x08, {3, 5});
  b.resize(b.size() + 12);
  write_raw("d", b);
  EXPECT_MENTIONS(read_error("d"), "dimensions 3 x 5 of unsigned byte need 15 payload bytes");
  auto t = header(0x08, {3, 4});
  t.resize(t.size() + 12 + 5);
  write_raw("g", t);
  std::string msg = read_error("g");
  EXPECT_MENTIONS(msg, "byte 24: trailing garbage");
  EXPECT_MENTIONS(msg, "5 extra");
  // Images must be 3-D.
  write_idx_ubyte(path("train-images-idx3-ubyte"), {2, 6}, std::vector<uint8_t>(12), false);
  write_idx_ubyte(path("train-labels-idx1-ubyte"), {2}, {0, 1}, false);
  EXPECT_MENTIONS(load_error(), "byte 3: images must have 3 dimensions");
}

TEST_F(IdxTest, GzipDamage) {
  std::vector<uint8_t> px(3000);
  for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t((i * i) >> 3);
  write_idx_ubyte(path("z.gz"), {3, 1000}, px, true);
  auto gz = read_raw("z.gz");
  auto cut = gz;
  cut.resize(gz.size() / 2);
  write_raw("cut.gz", cut);
  EXPECT_MENTIONS(read_error("cut.gz"),
                  "byte " + std::to_string(cut.size()) + ": the gzip stream is truncated");
  auto flipped = gz;
  flipped[gz.size() / 2] ^= 0xff;
  write_raw("flip.gz", flipped);
  EXPECT_MENTIONS(read_error("flip.gz"), "corrupt gzip data");
  auto trail = gz;
  trail.push_back('x'), trail.push_back('y');
  write_raw("trail.gz", trail);
  EXPECT_MENTIONS(read_error("trail.gz"),
                  "byte " + std::to_string(gz.size()) +
                      ": 2 unexpected bytes after the end of the gzip stream");
  // Two concatenated members are one valid gzip file (what `cat a.gz b.gz` makes).
  // Split the IDX file itself: header+1 byte in member 1, 2 bytes in member 2.
  gzFile f = gzopen(path("two.gz").c_str(), "wb");
  const uint8_t part1[] = {0, 0, 8, 1, 0, 0, 0, 3, 1};
  gzwrite(f, part1, sizeof part1);
  gzclose(f);
  auto m1 = read_raw("two.gz");
  f = gzopen(path("two.gz").c_str(), "wb");
  const uint8_t part2[] = {2, 3};
  gzwrite(f, part2, sizeof part2);
  gzclose(f);
  auto m2 = read_raw("two.gz");
  m1.insert(m1.end(), m2.begin(), m2.end());
  write_raw("two.gz", m1);
  EXPECT_EQ(read_idx(path("two.gz")).payload, (std::vector<uint8_t>{1, 2, 3}));
}

TEST_F(IdxTest, LabelCountMismatch) {
  write_idx_ubyte(path("train-images-idx3-ubyte"), {3, 2, 2}, std::vector<uint8_t>(12), false);
  write_idx_ubyte(path("train-labels-idx1-ubyte"), {2}, {0, 1}, false);
  std::string msg = load_error();
  EXPECT_MENTIONS(msg, "'" + path("train-labels-idx1-ubyte") +
                           "': byte 4: label count does not match image count");
  EXPECT_MENTIONS(msg, "has 2 labels");
  EXPECT_MENTIONS(msg, "has 3 images");
}

TEST_F(IdxTest, LabelOutOfRange) {
  write_idx_ubyte(path("train-images-idx3-ubyte"), {3, 2, 2},
                  {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, false);
  write_idx_ubyte(path("train-labels-idx1-ubyte"), {3}, {0, 10, 1}, false);
  std::string msg = load_error();
  EXPECT_MENTIONS(msg, "'" + path("train-labels-idx1-ubyte") +
                           "': byte 9: label 10 of sample 1 is out of range");
  EXPECT_MENTIONS(msg, "num_classes is 10");
  // With more classes it is fine.
  EXPECT_EQ(IdxDataset::load(dir_, "train", std::nullopt, 11).num_classes(), 11);
  EXPECT_MENTIONS(load_error(0), "num_classes must be in 1..256");
}

TEST(FashionMnist, LoadsTheRealData) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/train-images-idx3-ubyte.gz") &&
      !fs::exists(dir + "/train-images-idx3-ubyte"))
    GTEST_SKIP() << "no Fashion-MNIST in " << dir;
  IdxDataset train = IdxDataset::load(dir, "train");
  IdxDataset test = IdxDataset::load(dir, "t10k", train.normalization());
  EXPECT_EQ(train.size(), 60000u);
  EXPECT_EQ(test.size(), 10000u);
  EXPECT_EQ(train.rows(), 28u);
  EXPECT_EQ(train.cols(), 28u);
  EXPECT_EQ(train.sample_numel(), 784u);
  EXPECT_NEAR(train.normalization().mean, 0.2860, 0.001);
  EXPECT_NEAR(train.normalization().std, 0.3530, 0.001);
  std::vector<int> per_class(10, 0);
  for (size_t i = 0; i < train.size(); ++i) ++per_class[train.label(i)];
  for (int c : per_class) EXPECT_EQ(c, 6000);  // Fashion-MNIST is balanced
  // Normalised train pixels have mean ~0 and std ~1.
  std::vector<float> x(784);
  double s = 0, sq = 0;
  for (size_t i = 0; i < 1000; ++i) {
    train.get(i, x.data());
    for (float v : x) s += v, sq += double(v) * v;
  }
  const double m = s / 784000, sd = std::sqrt(sq / 784000 - m * m);
  EXPECT_NEAR(m, 0.0, 0.05);
  EXPECT_NEAR(sd, 1.0, 0.05);
  // What --data idx: uses: the class count from the labels is Fashion-MNIST's 10.
  const auto [tr, te] = IdxDataset::load_train_test(dir);
  EXPECT_EQ(tr.num_classes(), 10);
  EXPECT_EQ(te.num_classes(), 10);
}

// Positions in a gzip file's errors count the decompressed bytes, and say so.
TEST_F(IdxTest, GzipPositionsCountDecompressedBytes) {
  write_idx_ubyte(path("train-images-idx3-ubyte.gz"), {3, 2, 2},
                  std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, true);
  write_idx_ubyte(path("train-labels-idx1-ubyte.gz"), {3}, {0, 1, 12}, true);
  EXPECT_MENTIONS(load_error(), "IDX file '" + path("train-labels-idx1-ubyte.gz") +
                                    "': byte 10 of the decompressed data: label 12 of sample 2");
}

TEST_F(IdxTest, DimensionsThatOverflowNameTheirByte) {
  auto b = header(0x0E, {0xFFFFFFFF, 0xFFFFFFFF, 2});
  write_raw("huge", b);
  EXPECT_MENTIONS(read_error("huge"), "byte 8: dimensions 4294967295 x 4294967295 overflow");
}
