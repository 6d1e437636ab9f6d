// open_data: every accepted --data form, and the errors for the others.
#include <gtest/gtest.h>

#include "runtime/data/cifar10.h"
#include "runtime/data/idx.h"
#include "runtime/data/open_data.h"
#include "runtime/data/synthetic.h"
#include "runtime/data/token_dataset.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;

namespace {

class OpenDataTest : public dp::test::TempDirTest {
 protected:
  std::string open_error(const std::string& spec, const std::string& val = "", size_t context = 8) {
    DataOptions o;
    o.context = context;
    return error_of([&] { open_data(spec, val, o); });
  }
  std::string tokens(const std::string& name, size_t n, int vocab) {
    std::vector<uint16_t> t(n);
    for (size_t k = 0; k < n; ++k) t[k] = uint16_t(k % size_t(vocab));
    write_token_file(path(name), t.data(), n, vocab);
    return path(name);
  }
};

}  // namespace

TEST_F(OpenDataTest, UnknownFormListsTheAcceptedOnes) {
  for (const std::string spec : {"foo", "", "tokens", "idx", "cifar:x", "Synthetic"}) {
    const std::string e = open_error(spec);
    EXPECT_MENTIONS(e, "--data '" + spec + "': unknown data source");
    EXPECT_MENTIONS(e, "idx:DIR, cifar10:DIR, tokens:FILE or synthetic[:N]");
  }
}

TEST_F(OpenDataTest, Synthetic) {
  DataOptions o;
  o.seed = 5;
  o.synthetic_test_size = 30;
  DataSplits d = open_data("synthetic:100", "", o);
  ASSERT_TRUE(d.train && d.test);
  EXPECT_EQ(d.train->size(), 100u);
  EXPECT_EQ(d.train->sample_shape(), (Shape{784}));
  EXPECT_EQ(d.train->num_classes(), 10);
  EXPECT_EQ(d.train->kind(), DataKind::vectors);
  EXPECT_EQ(d.test->size(), 30u);
  // The test split is the same task's samples 100, 101, ...
  SyntheticDataset task(200, 784, 10, 5);
  std::vector<float> a(784), b(784);
  int32_t la = 0, lb = task.get(100, b.data());
  d.test->fill(0, a.data(), &la);
  EXPECT_EQ(la, lb);
  EXPECT_EQ(a, b);
  EXPECT_EQ(open_data("synthetic", "", o).train->size(), 60000u);
  for (const char* bad : {"synthetic:", "synthetic:0", "synthetic:-5", "synthetic:12x",
                          "synthetic: 5", "synthetic:+5", "synthetic:5 "})
    EXPECT_MENTIONS(open_error(bad), std::string("--data ") + bad +
                                         ": expected synthetic:N with a positive sample count");
  // Too large for the sampler's indices, and past unsigned long long: an error naming --data,
  // not std::bad_alloc or a vector length error.
  for (const char* big :
       {"synthetic:100000001", "synthetic:4000000000000", "synthetic:99999999999999999999"})
    EXPECT_MENTIONS(open_error(big),
                    std::string("--data ") + big + ": at most 100000000 synthetic samples");
  EXPECT_EQ(open_data("synthetic:100000000", "", o).train->size(), 100000000u);
  o.synthetic_test_size = 0;
  EXPECT_MENTIONS(error_of([&] { open_data("synthetic:10", "", o); }),
                  "--synthetic-test-size must be at least 1 (got 0)");
}

TEST_F(OpenDataTest, Idx) {
  std::vector<uint8_t> px(4 * 6), lab = {0, 1, 2, 3};
  for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t(i * 9);
  for (const char* split : {"train", "t10k"}) {
    write_idx_ubyte(path(std::string(split) + "-images-idx3-ubyte"), {4, 2, 3}, px, false);
    write_idx_ubyte(path(std::string(split) + "-labels-idx1-ubyte"), {4}, lab, false);
  }
  DataSplits d = open_data("idx:" + dir_, "", DataOptions{});
  EXPECT_EQ(d.train->size(), 4u);
  EXPECT_EQ(d.train->sample_shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(d.train->kind(), DataKind::images);
  const auto& train = static_cast<const IdxDataset&>(*d.train);
  const auto& test = static_cast<const IdxDataset&>(*d.test);
  EXPECT_EQ(test.normalization().mean, train.normalization().mean);
  EXPECT_MENTIONS(open_error("idx:"), "--data idx:: the path is missing (expected idx:DIR)");
  EXPECT_MENTIONS(open_error("idx:" + path("none")), path("none"));
}

TEST_F(OpenDataTest, IdxTestImagesMustHaveTheTrainingSize) {
  auto split = [&](const std::string& name, uint32_t rows, uint32_t cols) {
    const std::vector<uint8_t> lab = {0, 1, 2};
    std::vector<uint8_t> px(lab.size() * rows * cols);
    for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t(i * 7);
    write_idx_ubyte(path(name + "-images-idx3-ubyte"), {uint32_t(lab.size()), rows, cols}, px,
                    false);
    write_idx_ubyte(path(name + "-labels-idx1-ubyte"), {uint32_t(lab.size())}, lab, false);
  };
  split("train", 4, 4);
  // The same pixel count in another shape (evaluated silently before), and another count
  // (a layer error after training, naming neither the data nor the file).
  for (auto [rows, cols] : {std::pair<uint32_t, uint32_t>{2, 8}, {5, 5}}) {
    split("t10k", rows, cols);
    const std::string e = open_error("idx:" + dir_);
    EXPECT_MENTIONS(e, "--data idx:" + dir_ + ": the test images '" +
                           path("t10k-images-idx3-ubyte") + "' are " + std::to_string(rows) + "x" +
                           std::to_string(cols) + " but the training images '" +
                           path("train-images-idx3-ubyte") + "' are 4x4");
  }
}

TEST_F(OpenDataTest, IdxClassCountComesFromTheLabels) {
  auto split = [&](const std::string& name, const std::vector<uint8_t>& lab) {
    std::vector<uint8_t> px(lab.size() * 4);
    for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t(i * 13);
    write_idx_ubyte(path(name + "-images-idx3-ubyte"), {uint32_t(lab.size()), 2, 2}, px, false);
    write_idx_ubyte(path(name + "-labels-idx1-ubyte"), {uint32_t(lab.size())}, lab, false);
  };
  auto classes = [&] {
    DataSplits d = open_data("idx:" + dir_, "", DataOptions{});
    EXPECT_EQ(d.test->num_classes(), d.train->num_classes());
    return d.train->num_classes();
  };
  split("train", {0, 1, 2, 1});
  split("t10k", {2, 0});
  EXPECT_EQ(classes(), 3);  // not 10
  split("t10k", {6, 0});    // a class only the test split has still counts
  EXPECT_EQ(classes(), 7);
  split("train", {0, 11, 3, 1});  // more than 10 classes are fine
  EXPECT_EQ(classes(), 12);
  split("train", {0, 0});
  split("t10k", {0});
  EXPECT_EQ(classes(), 1);
}

TEST_F(OpenDataTest, Cifar10) {
  std::vector<uint8_t> px(2 * kCifarPixels);
  for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t(i % 251);
  std::filesystem::create_directory(path("cifar-10-batches-bin"));
  for (int f = 1; f <= 5; ++f)
    write_cifar10_file(path("cifar-10-batches-bin/data_batch_" + std::to_string(f) + ".bin"),
                       {uint8_t(f), 0}, px);
  write_cifar10_file(path("cifar-10-batches-bin/test_batch.bin"), {9, 8}, px);
  DataSplits d = open_data("cifar10:" + dir_, "", DataOptions{});
  EXPECT_EQ(d.train->size(), 10u);
  EXPECT_EQ(d.test->size(), 2u);
  EXPECT_EQ(d.train->sample_shape(), (Shape{3, 32, 32}));
  const auto& train = static_cast<const Cifar10Dataset&>(*d.train);
  const auto& test = static_cast<const Cifar10Dataset&>(*d.test);
  for (size_t c = 0; c < 3; ++c)
    EXPECT_EQ(test.normalization()[c].std, train.normalization()[c].std);
  EXPECT_MENTIONS(open_error("cifar10:"), "the path is missing (expected cifar10:DIR)");
  EXPECT_MENTIONS(open_error("cifar10:" + path("none")), "does not exist");
}

TEST_F(OpenDataTest, TokensWithAndWithoutValidation) {
  const std::string train = tokens("train.bin", 100, 257), val = tokens("val.bin", 30, 257);
  DataOptions o;
  o.context = 8;
  DataSplits d = open_data("tokens:" + train, "", o);
  ASSERT_TRUE(d.train);
  EXPECT_EQ(d.test, nullptr);  // train-only is legal
  EXPECT_EQ(d.train->size(), 99u / 8);
  EXPECT_EQ(d.train->kind(), DataKind::tokens);
  EXPECT_EQ(d.train->num_classes(), 257);
  d = open_data("tokens:" + train, "tokens:" + val, o);
  ASSERT_TRUE(d.test);
  EXPECT_EQ(d.test->size(), 29u / 8);
  EXPECT_EQ(static_cast<const TokenDataset&>(*d.test).file().path(), val);
}

TEST_F(OpenDataTest, TokenErrors) {
  const std::string train = tokens("train.bin", 100, 257), other = tokens("o.bin", 30, 300);
  EXPECT_MENTIONS(open_error("tokens:" + train, "", 0), "needs the model's context length");
  EXPECT_MENTIONS(open_error("tokens:"),
                  "--data tokens:: the path is missing (expected tokens:FILE)");
  EXPECT_MENTIONS(open_error("tokens:" + train, "tokens:"),
                  "--val-data tokens:: the path is missing");
  EXPECT_MENTIONS(open_error("tokens:" + train, "idx:" + dir_), "expected tokens:FILE");
  const std::string e = open_error("tokens:" + train, "tokens:" + other);
  EXPECT_MENTIONS(
      e, "'" + other + "' have vocabulary size 300 but the training tokens '" + train + "' 257");
  EXPECT_MENTIONS(open_error("tokens:" + train, "", 100), "too few for one window of context 100");
  EXPECT_MENTIONS(open_error("tokens:" + path("none.bin")),
                  "'" + path("none.bin") + "': cannot open");
  // Image and synthetic data bring their own test split.
  EXPECT_MENTIONS(open_error("synthetic:10", "tokens:" + train),
                  "a separate validation set is only for --data tokens:FILE");
}
