// TokenDataset's windows, and the DataLoader over token data (int32 inputs, [B, T] targets).
#include <gtest/gtest.h>

#include <set>

#include <fcntl.h>
#include <unistd.h>

#include "runtime/data/dataloader.h"
#include "runtime/data/token_dataset.h"
#include "samplers/distributed_sampler.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;

namespace {

class TokenDatasetTest : public dp::test::TempDirTest {
 protected:
  // Token k is (k * 3) % vocab: every window's content is predictable from its position.
  std::string write_tokens(size_t n, int vocab = 1000, const std::string& name = "t.bin") {
    std::vector<uint16_t> t(n);
    for (size_t k = 0; k < n; ++k) t[k] = uint16_t((k * 3) % size_t(vocab));
    write_token_file(path(name), t.data(), n, vocab);
    return path(name);
  }
  static int32_t token(size_t k, int vocab = 1000) { return int32_t((k * 3) % size_t(vocab)); }
};

}  // namespace

TEST_F(TokenDatasetTest, WindowsAreLlmcStyle) {
  // 23 tokens, context 4: windows start at 0, 4, 8, 12, 16 (the last uses tokens 16..20);
  // (23 - 1) / 4 = 5.
  TokenDataset ds(write_tokens(23), 4);
  EXPECT_EQ(ds.size(), 5u);
  EXPECT_EQ(ds.kind(), DataKind::tokens);
  EXPECT_EQ(ds.sample_shape(), (Shape{4}));
  EXPECT_EQ(ds.sample_numel(), 4u);
  EXPECT_EQ(ds.input_dtype(), DType::i32);
  EXPECT_EQ(ds.target_numel(), 4u);
  EXPECT_EQ(ds.num_classes(), 1000);
  std::vector<int32_t> x(4), y(4);
  ds.fill(0, x.data(), y.data());
  EXPECT_EQ(x, (std::vector<int32_t>{0, 3, 6, 9}));
  EXPECT_EQ(y, (std::vector<int32_t>{3, 6, 9, 12}));
  ds.fill(4, x.data(), y.data());
  EXPECT_EQ(x, (std::vector<int32_t>{48, 51, 54, 57}));
  EXPECT_EQ(y, (std::vector<int32_t>{51, 54, 57, 60}));
  EXPECT_MENTIONS(error_of([&] { ds.fill(5, x.data(), y.data()); }), "sample 5 out of range");
}

TEST_F(TokenDatasetTest, SizeFormula) {
  for (size_t n : {2, 5, 9, 10, 11, 100}) {
    for (size_t t : {1, 3, 8}) {
      if (n <= t) continue;
      TokenDataset ds(write_tokens(n), t);
      EXPECT_EQ(ds.size(), (n - 1) / t) << n << " tokens, context " << t;
      // The last window's final target is the last token it may touch, never past the file.
      std::vector<int32_t> x(t), y(t);
      ds.fill(ds.size() - 1, x.data(), y.data());
      EXPECT_EQ(y.back(), token(ds.size() * t));
      EXPECT_LE(ds.size() * t, n - 1);
    }
  }
}

TEST_F(TokenDatasetTest, ContextLongerThanTheData) {
  const std::string f = write_tokens(8);
  const std::string e = error_of([&] { TokenDataset ds(f, 8); });
  EXPECT_MENTIONS(e, "'" + f + "' holds 8 tokens, too few for one window of context 8 (needs 9");
  EXPECT_MENTIONS(error_of([&] { TokenDataset ds(f, 0); }), "context length must be > 0");
  EXPECT_EQ(TokenDataset(f, 7).size(), 1u);
}

// Windows are read a chunk of 2048 tokens at a time: one that spans chunks is the same.
TEST_F(TokenDatasetTest, LongWindowsCrossReadChunks) {
  const size_t t = 4100;
  TokenDataset ds(write_tokens(3 * t + 7, 50000), t);
  std::vector<int32_t> x(t), y(t);
  for (size_t i = 0; i < ds.size(); ++i) {
    ds.fill(i, x.data(), y.data());
    for (size_t k = 0; k < t; ++k) {
      ASSERT_EQ(x[k], token(i * t + k, 50000)) << "window " << i << " input " << k;
      ASSERT_EQ(y[k], token(i * t + k + 1, 50000)) << "window " << i << " target " << k;
    }
  }
}

// The file was memory-mapped: truncated under a running job, the next batch died of SIGBUS
// with a raw stack trace instead of an error naming the file.
TEST_F(TokenDatasetTest, AFileTruncatedAfterOpeningIsAnErrorNamingIt) {
  const std::string file = write_tokens(50000);
  TokenDataset ds(file, 64);
  std::vector<int32_t> x(64), y(64);
  ds.fill(700, x.data(), y.data());
  ASSERT_EQ(::truncate(file.c_str(), 1024 + 2 * 1000), 0);
  ds.fill(10, x.data(), y.data());  // still in the file
  EXPECT_EQ(x[0], token(640));
  const std::string e = error_of([&] { ds.fill(700, x.data(), y.data()); });
  EXPECT_MENTIONS(e, "token file '" + file +
                         "': byte 90624: cannot read: the file has 3024 "
                         "bytes, it had 101024 when it was opened: it was truncated");
}

TEST_F(TokenDatasetTest, SharesOneFile) {
  auto file = std::make_shared<const TokenFile>(write_tokens(50));
  TokenDataset a(file, 4), b(file, 7);
  EXPECT_EQ(&a.file(), &b.file());
  EXPECT_EQ(a.size(), 12u);
  EXPECT_EQ(b.size(), 7u);
}

TEST_F(TokenDatasetTest, LoaderBatchesTokens) {
  // 101 tokens, context 5: 20 windows; batches of 3 on one rank, no shuffle.
  TokenDataset ds(write_tokens(101), 5);
  for (bool prefetch : {false, true}) {
    for (size_t workers : {1, 2}) {
      DistributedSampler s(ds.size(), 1, 0, /*shuffle=*/false);
      DataLoader loader(ds, s, 3, prefetch, false, workers);
      loader.start_epoch(0);
      size_t seen = 0;
      while (const Batch* b = loader.next()) {
        EXPECT_EQ(b->x.dtype(), DType::i32);
        EXPECT_EQ(b->y.dtype(), DType::i32);
        EXPECT_EQ(b->x.shape(), (Shape{int64_t(b->size), 5}));
        EXPECT_EQ(b->y.shape(), (Shape{int64_t(b->size), 5}));
        for (size_t r = 0; r < b->size; ++r) {
          const size_t w = seen + r;  // window index, in order
          for (size_t k = 0; k < 5; ++k) {
            ASSERT_EQ(b->x.data<int32_t>()[r * 5 + k], token(w * 5 + k));
            ASSERT_EQ(b->y.data<int32_t>()[r * 5 + k], token(w * 5 + k + 1));
          }
        }
        seen += b->size;
      }
      EXPECT_EQ(seen, 20u);
    }
  }
}

TEST_F(TokenDatasetTest, LoaderShardsWindowsOverRanks) {
  // 20 windows over 3 ranks: 7 each (padded by wrapping), every window covered, each rank's
  // windows exactly those the sampler lists.
  TokenDataset ds(write_tokens(101), 5);
  std::set<int32_t> covered;
  for (int rank = 0; rank < 3; ++rank) {
    DistributedSampler s(ds.size(), 3, rank, /*shuffle=*/true, 11);
    DistributedSampler ref(ds.size(), 3, rank, true, 11);
    ref.set_epoch(2);
    DataLoader loader(ds, s, 4);
    loader.start_epoch(2);
    std::vector<size_t> windows;
    while (const Batch* b = loader.next()) {
      for (size_t r = 0; r < b->size; ++r) {
        // Window w starts with token 3 * 5w; recover w from it (vocab 1000 > all starts).
        const int32_t first = b->x.data<int32_t>()[r * 5];
        windows.push_back(size_t(first / 15));
        covered.insert(first / 15);
      }
    }
    EXPECT_EQ(windows, ref.indices());
    EXPECT_EQ(windows.size(), 7u);
  }
  EXPECT_EQ(covered.size(), 20u);
}

namespace {

// A token dataset whose window 2 holds a target past the vocabulary at position 3.
class BadTargets : public Dataset {
 public:
  size_t size() const override { return 4; }
  DataKind kind() const override { return DataKind::tokens; }
  Shape sample_shape() const override { return {5}; }
  size_t sample_numel() const override { return 5; }
  DType input_dtype() const override { return DType::i32; }
  size_t target_numel() const override { return 5; }
  int num_classes() const override { return 10; }
  void fill(size_t i, void* x, int32_t* y) const override {
    for (int k = 0; k < 5; ++k) static_cast<int32_t*>(x)[k] = y[k] = k;
    if (i == 2) y[3] = 10;
  }
  std::string describe() const override { return "bad targets"; }
};

}  // namespace

TEST(TokenLoader, TargetOutsideTheVocabularyNamesSampleAndPosition) {
  BadTargets ds;
  DistributedSampler s(4, 1, 0, false);
  DataLoader loader(ds, s, 4);
  loader.start_epoch(0);
  const std::string e = error_of([&] { loader.next(); });
  EXPECT_MENTIONS(e, "sample 2 has target 10 at position 3, outside 0..9 (bad targets)");
}

// A huge file cut into windows of a tiny context: every rank's sampler would index each
// window (bad_alloc or the OOM killer at 2^31 tokens and --context 2). Refused naming the
// context that would do. (A sparse file: nothing is written beyond the header.)
TEST_F(TokenDatasetTest, MoreWindowsThanASamplerIndexesAreRefusedNamingTheContext) {
  const std::string p = write_tokens(3);
  const size_t n = 2 * kMaxSamplerSize + 1;  // 2e8 windows at context 1, 1e8 at context 2
  const int fd = ::open(p.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const int32_t count = int32_t(n);
  ASSERT_EQ(::pwrite(fd, &count, sizeof count, 8), ssize_t(sizeof count));
  ASSERT_EQ(::ftruncate(fd, off_t(1024 + 2 * n)), 0);
  ::close(fd);
  EXPECT_MENTIONS(error_of([&] { TokenDataset(p, 1); }),
                  "at context 1 that is 200000000 windows, more than the 100000000 a rank can "
                  "index; use a longer --context (at least 2)");
  TokenDataset two(p, 2);  // (n - 1) / 2 = 1e8 windows: the most a sampler takes
  EXPECT_EQ(two.size(), kMaxSamplerSize);
  // One token more: context 2 still makes (2e8 + 1) / 2 = 1e8 windows, so 2 is what to name,
  // though 2e8 + 1 over 1e8 rounds up to 3.
  {
    const int fd2 = ::open(p.c_str(), O_RDWR);
    ASSERT_GE(fd2, 0);
    const int32_t more = int32_t(n + 1);
    ASSERT_EQ(::pwrite(fd2, &more, sizeof more, 8), ssize_t(sizeof more));
    ASSERT_EQ(::ftruncate(fd2, off_t(1024 + 2 * (n + 1))), 0);
    ::close(fd2);
  }
  EXPECT_MENTIONS(error_of([&] { TokenDataset(p, 1); }), "(at least 2)");
  EXPECT_EQ(TokenDataset(p, 2).size(), kMaxSamplerSize);
  EXPECT_MENTIONS(error_of([&] { DistributedSampler(kMaxSamplerSize + 1, 1, 0); }),
                  "sampler: 100000001 samples are more than the 100000000 a rank can index");
}
