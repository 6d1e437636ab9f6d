// The CIFAR-10 binary reader on generated files: layout, labels, per-channel normalisation
// against a hand computation, both directory layouts, and every bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/data/cifar10.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;

namespace {

constexpr size_t kPlane = 32 * 32;

class Cifar10Test : public dp::test::TempDirTest {
 protected:
  // Record i of the training split (one per file, i = file - 1) is flat per channel: value
  // 50 c + 10 (c + 1) i. Channel c then holds 50c + 10(c+1) * {0..4}, 1024 times each:
  // mean (50c + 20(c+1)) / 255, population std 10(c+1) sqrt(2) / 255.
  static uint8_t flat_value(size_t i, size_t c) { return uint8_t(50 * c + 10 * (c + 1) * i); }

  void write_train(const std::string& dir) {
    std::filesystem::create_directories(dir);
    for (size_t f = 1; f <= 5; ++f) {
      std::vector<uint8_t> px(kCifarPixels);
      for (size_t c = 0; c < 3; ++c)
        std::fill(px.begin() + c * kPlane, px.begin() + (c + 1) * kPlane, flat_value(f - 1, c));
      write_cifar10_file(dir + "/data_batch_" + std::to_string(f) + ".bin", {uint8_t((f * 3) % 10)},
                         px);
    }
  }
  // Test split: n records whose pixel (c, r, col) is (c * 7 + r * 3 + col + i) % 256.
  static uint8_t pattern(size_t i, size_t c, size_t r, size_t col) {
    return uint8_t((c * 7 + r * 3 + col + i) % 256);
  }
  void write_test(const std::string& dir, size_t n) {
    std::vector<uint8_t> labels, px;
    for (size_t i = 0; i < n; ++i) {
      labels.push_back(uint8_t(9 - i % 10));
      for (size_t c = 0; c < 3; ++c)
        for (size_t r = 0; r < 32; ++r)
          for (size_t col = 0; col < 32; ++col) px.push_back(pattern(i, c, r, col));
    }
    write_cifar10_file(dir + "/test_batch.bin", labels, px);
  }
  std::string load_error(Cifar10Split split = Cifar10Split::train) {
    return error_of([&] { Cifar10Dataset::load(dir_, split); });
  }
};

const ChannelNormalization kIdentity = {Normalization{0, 1}, Normalization{0, 1},
                                        Normalization{0, 1}};

}  // namespace

TEST_F(Cifar10Test, RecordsAreChannelMajorImages) {
  write_test(dir_, 3);
  Cifar10Dataset ds = Cifar10Dataset::load_files({path("test_batch.bin")}, kIdentity);
  EXPECT_EQ(ds.size(), 3u);
  EXPECT_EQ(ds.kind(), DataKind::images);
  EXPECT_EQ(ds.sample_shape(), (Shape{3, 32, 32}));
  EXPECT_EQ(ds.sample_numel(), 3072u);
  EXPECT_EQ(ds.num_classes(), 10);
  std::vector<float> x(3072);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(ds.get(i, x.data()), int32_t(9 - i));
    EXPECT_EQ(ds.label(i), int32_t(9 - i));
    for (size_t c : {0, 1, 2})
      for (auto [r, col] : {std::pair<size_t, size_t>{0, 0}, {0, 31}, {5, 7}, {31, 31}}) {
        const size_t k = c * kPlane + r * 32 + col;
        EXPECT_EQ(ds.pixels(i)[k], pattern(i, c, r, col));
        EXPECT_NEAR(x[k], pattern(i, c, r, col) / 255.0, 1e-6) << i << " " << c << " " << r;
      }
  }
}

TEST_F(Cifar10Test, NormalisesPerChannelWithTrainingStatistics) {
  write_train(dir_);
  write_test(dir_, 2);
  Cifar10Dataset train = Cifar10Dataset::load(dir_, Cifar10Split::train);
  ASSERT_EQ(train.size(), 5u);
  for (size_t c = 0; c < 3; ++c) {
    const double mean = (50.0 * c + 20.0 * (c + 1)) / 255.0;
    const double sd = 10.0 * (c + 1) * std::sqrt(2.0) / 255.0;
    EXPECT_NEAR(train.normalization()[c].mean, mean, 1e-12) << "channel " << c;
    EXPECT_NEAR(train.normalization()[c].std, sd, 1e-12) << "channel " << c;
  }
  // Labels in file order: data_batch_f holds label 3f % 10.
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(train.label(i), int32_t((i + 1) * 3 % 10));
  // Training record 4, channel 2: pixel 100 + 30 * 4 = 220, mean 160, std 30 sqrt 2.
  std::vector<float> x(3072);
  train.get(4, x.data());
  EXPECT_NEAR(x[2 * kPlane + 100], 60.0 / (30.0 * std::sqrt(2.0)), 1e-5);
  EXPECT_NEAR(x[0], (40.0 - 20.0) / (10.0 * std::sqrt(2.0)), 1e-5);

  Cifar10Dataset test = Cifar10Dataset::load(dir_, Cifar10Split::test, train.normalization());
  EXPECT_EQ(test.size(), 2u);
  test.get(1, x.data());
  for (size_t c = 0; c < 3; ++c) {
    const Normalization& n = train.normalization()[c];
    const size_t k = c * kPlane + 3 * 32 + 4;
    EXPECT_NEAR(x[k], (pattern(1, c, 3, 4) / 255.0 - n.mean) / n.std, 1e-5) << "channel " << c;
  }
  EXPECT_MENTIONS(train.describe(), "5 images of 3x32x32");
}

TEST_F(Cifar10Test, AcceptsTheArchiveDirectory) {
  write_train(path("cifar-10-batches-bin"));
  write_test(path("cifar-10-batches-bin"), 4);
  EXPECT_EQ(resolve_cifar10_dir(dir_), path("cifar-10-batches-bin"));
  EXPECT_EQ(Cifar10Dataset::load(dir_, Cifar10Split::train).size(), 5u);
  EXPECT_EQ(Cifar10Dataset::load(dir_, Cifar10Split::test).size(), 4u);
  EXPECT_EQ(Cifar10Dataset::load(path("cifar-10-batches-bin"), Cifar10Split::test).size(), 4u);
}

TEST_F(Cifar10Test, MissingDirectoryOrFiles) {
  EXPECT_MENTIONS(error_of([&] { Cifar10Dataset::load(path("nowhere"), Cifar10Split::train); }),
                  "CIFAR-10 directory '" + path("nowhere") + "' does not exist");
  EXPECT_MENTIONS(load_error(),
                  "holds no CIFAR-10 binary files, directly or in cifar-10-batches-bin/");
  write_train(dir_);
  std::filesystem::remove(path("data_batch_3.bin"));
  EXPECT_MENTIONS(load_error(), "CIFAR-10 file '" + path("data_batch_3.bin") + "' not found");
  write_train(dir_);
  EXPECT_MENTIONS(load_error(Cifar10Split::test), "'" + path("test_batch.bin") + "' not found");
}

TEST_F(Cifar10Test, SizeNotAWholeNumberOfRecords) {
  write_train(dir_);
  std::vector<uint8_t> bytes(3073 * 2 + 5, 1);
  write_bytes(path("data_batch_2.bin"), bytes);
  const std::string e = load_error();
  EXPECT_MENTIONS(e, "'" + path("data_batch_2.bin") +
                         "': byte 6146: 6151 bytes is not a whole number of 3073-byte records");
  EXPECT_MENTIONS(e, "2 records and 5 bytes left over");
  write_bytes(path("data_batch_2.bin"), {});
  EXPECT_MENTIONS(load_error(), "'" + path("data_batch_2.bin") + "': byte 0: the file is empty");
}

TEST_F(Cifar10Test, LabelOutOfRange) {
  write_train(dir_);
  std::vector<uint8_t> px(2 * kCifarPixels, 7);
  write_cifar10_file(path("data_batch_4.bin"), {3, 10}, px);
  EXPECT_MENTIONS(load_error(), "'" + path("data_batch_4.bin") +
                                    "': byte 3073: record 1 has label 10, outside 0..9");
}

TEST_F(Cifar10Test, ConstantChannelCannotBeNormalised) {
  // Two records, all zero but record 0's red plane: green (channel 1) never varies.
  std::vector<uint8_t> px(2 * kCifarPixels, 0);
  std::fill(px.begin(), px.begin() + kPlane, 17);
  write_cifar10_file(path("test_batch.bin"), {1, 2}, px);
  EXPECT_MENTIONS(load_error(Cifar10Split::test), "cannot normalise channel 1");
}
