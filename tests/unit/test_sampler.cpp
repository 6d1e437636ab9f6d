#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <set>

#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "samplers/distributed_sampler.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;

namespace {

std::vector<std::vector<size_t>> all_ranks(size_t n, int world, bool shuffle, uint64_t seed,
                                           bool drop_last, uint64_t epoch = 0) {
  std::vector<std::vector<size_t>> out;
  for (int r = 0; r < world; ++r) {
    DistributedSampler s(n, world, r, shuffle, seed, drop_last);
    s.set_epoch(epoch);
    out.push_back(s.indices());
  }
  return out;
}

std::vector<size_t> iota_vec(size_t n) {
  std::vector<size_t> v(n);
  std::iota(v.begin(), v.end(), size_t{0});
  return v;
}

}  // namespace

// Every case PyTorch computed. dprun refuses world > N (a rank would train on padding only),
// so for those cases the constructor must throw, and the policy-free shard() must still
// reproduce PyTorch's wrap-around padding.
TEST(DistributedSampler, MatchesPyTorchNoShuffle) {
  std::ifstream in(std::string(DPRUN_TEST_DATA) + "/sampler_no_shuffle.json");
  ASSERT_TRUE(in) << "missing " << DPRUN_TEST_DATA << "/sampler_no_shuffle.json";
  nlohmann::json j = nlohmann::json::parse(in);
  size_t checked = 0, refused = 0;
  for (const auto& c : j.at("cases")) {
    const size_t n = c.at("size");
    const int world = c.at("world");
    const bool drop_last = c.at("drop_last");
    const auto expected = c.at("indices_per_rank").get<std::vector<std::vector<size_t>>>();
    ASSERT_EQ(expected.size(), size_t(world));
    SCOPED_TRACE(testing::Message()
                 << "size " << n << " world " << world << " drop_last " << drop_last);
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(DistributedSampler::shard(iota_vec(n), world, r, drop_last), expected[r])
          << "rank " << r;
      if (size_t(world) > n) {
        EXPECT_THROW(DistributedSampler(n, world, r, false, 0, drop_last), Error);
        ++refused;
        continue;
      }
      DistributedSampler s(n, world, r, /*shuffle=*/false, /*seed=*/123, drop_last);
      EXPECT_EQ(s.indices(), expected[r]) << "rank " << r;
      EXPECT_EQ(s.num_samples(), expected[r].size());
      EXPECT_EQ(s.total_size(), expected[r].size() * world);
      s.set_epoch(5);  // without shuffle the epoch changes nothing
      EXPECT_EQ(s.indices(), expected[r]) << "rank " << r << " epoch 5";
      ++checked;
    }
  }
  EXPECT_GT(checked, 50u);
  EXPECT_GT(refused, 0u);
}

TEST(DistributedSampler, SizesFollowPyTorch) {
  for (size_t n : {1, 2, 5, 10, 11, 97, 1000}) {
    for (int world : {1, 2, 3, 4, 8}) {
      if (size_t(world) > n) continue;
      DistributedSampler keep(n, world, 0, true, 0, false);
      DistributedSampler drop(n, world, 0, true, 0, true);
      EXPECT_EQ(keep.num_samples(), (n + world - 1) / world);
      EXPECT_EQ(drop.num_samples(), n / world);
      EXPECT_EQ(keep.total_size(), keep.num_samples() * world);
      EXPECT_EQ(drop.total_size(), drop.num_samples() * world);
    }
  }
}

TEST(DistributedSampler, PaddingWrapsAroundFromTheStart) {
  // 10 samples on 4 ranks: 12 positions, the last two are the order's first two.
  for (bool shuffle : {false, true}) {
    auto ranks = all_ranks(10, 4, shuffle, 7, false, 3);
    auto order = DistributedSampler::epoch_order(10, shuffle, 7, 3);
    std::vector<size_t> padded(12);
    for (size_t p = 0; p < 12; ++p) padded[p] = ranks[p % 4][p / 4];
    std::vector<size_t> want = order;
    want.push_back(order[0]);
    want.push_back(order[1]);
    EXPECT_EQ(padded, want);
  }
}

TEST(DistributedSampler, DropLastShardsAreDisjointEqualAndFromTheOrder) {
  for (size_t n : {10, 11, 97, 1000}) {
    for (int world : {1, 2, 3, 4, 7}) {
      auto ranks = all_ranks(n, world, true, 42, true, 1);
      std::set<size_t> seen;
      for (const auto& r : ranks) {
        EXPECT_EQ(r.size(), n / world);
        for (size_t i : r) {
          EXPECT_LT(i, n);
          EXPECT_TRUE(seen.insert(i).second) << "index " << i << " on two ranks";
        }
      }
      // Exactly the order's first total positions, none of the dropped tail.
      auto order = DistributedSampler::epoch_order(n, true, 42, 1);
      std::set<size_t> head(order.begin(), order.begin() + (n / world) * world);
      EXPECT_EQ(seen, head);
    }
  }
}

TEST(DistributedSampler, UnionCoversEveryIndexAndShardsAreEqual) {
  for (size_t n : {10, 11, 97, 1000}) {
    for (int world : {1, 2, 3, 4, 7}) {
      auto ranks = all_ranks(n, world, true, 9, false, 2);
      std::set<size_t> seen;
      for (const auto& r : ranks) {
        EXPECT_EQ(r.size(), ranks[0].size());
        seen.insert(r.begin(), r.end());
      }
      EXPECT_EQ(seen.size(), n);
      EXPECT_EQ(*seen.rbegin(), n - 1);
    }
  }
}

TEST(DistributedSampler, EpochOrderIsAPermutation) {
  for (uint64_t e = 0; e < 5; ++e) {
    auto order = DistributedSampler::epoch_order(1000, true, 3, e);
    auto sorted = order;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, iota_vec(1000));
    EXPECT_NE(order, iota_vec(1000));
  }
  EXPECT_EQ(DistributedSampler::epoch_order(6, false, 3, 9), iota_vec(6));
}

TEST(DistributedSampler, EpochsDifferSeedsReproduce) {
  auto e0 = DistributedSampler::epoch_order(500, true, 11, 0);
  auto e1 = DistributedSampler::epoch_order(500, true, 11, 1);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(e0, DistributedSampler::epoch_order(500, true, 11, 0));
  EXPECT_NE(e0, DistributedSampler::epoch_order(500, true, 12, 0));

  DistributedSampler a(500, 4, 1, true, 11), b(500, 4, 1, true, 11);
  a.set_epoch(3);
  b.set_epoch(7);
  EXPECT_NE(a.indices(), b.indices());
  b.set_epoch(3);
  EXPECT_EQ(a.indices(), b.indices());
}

TEST(DistributedSampler, ShuffleIsRoughlyUniform) {
  // Which element lands first, over 5000 epochs of 5 elements: about 1000 each.
  std::vector<int> first(5, 0);
  for (uint64_t e = 0; e < 5000; ++e) ++first[DistributedSampler::epoch_order(5, true, 1, e)[0]];
  for (int c : first) {
    EXPECT_GT(c, 850);
    EXPECT_LT(c, 1150);
  }
}

TEST(DistributedSampler, SetStartSkipsExactlyAndSetEpochRewinds) {
  DistributedSampler s(103, 4, 2, true, 5);
  s.set_epoch(4);
  const std::vector<size_t> full = s.indices();
  ASSERT_EQ(full.size(), 26u);
  for (size_t k : {0, 1, 8, 25, 26}) {
    s.set_start(k);
    EXPECT_EQ(s.start(), k);
    EXPECT_EQ(s.indices(), std::vector<size_t>(full.begin() + k, full.end())) << k;
    EXPECT_EQ(s.num_samples(), 26u);  // the epoch's size does not shrink
  }
  // After s steps of batch B, resuming at k = s * B continues the same sequence.
  s.set_start(3 * 4);
  EXPECT_EQ(s.indices().front(), full[12]);
  s.set_epoch(4);
  EXPECT_EQ(s.start(), 0u);
  EXPECT_EQ(s.indices(), full);
  EXPECT_THROW(s.set_start(27), Error);
  EXPECT_NE(error_of([&] { s.set_start(27); }).find("only 26 samples"), std::string::npos);
}

TEST(DistributedSampler, RejectsBadArguments) {
  EXPECT_NE(error_of([] { DistributedSampler(10, 0, 0); }).find("world size"), std::string::npos);
  EXPECT_NE(error_of([] { DistributedSampler(10, 2, 2); }).find("rank 2 is out of range"),
            std::string::npos);
  EXPECT_NE(error_of([] { DistributedSampler(10, 2, -1); }).find("rank -1"), std::string::npos);
  EXPECT_NE(error_of([] { DistributedSampler(0, 1, 0); }).find("empty"), std::string::npos);
  const std::string msg = error_of([] { DistributedSampler(3, 4, 0); });
  EXPECT_NE(msg.find("world size 4 is larger than the dataset (3 samples): some ranks would get "
                     "no data"),
            std::string::npos)
      << msg;
  EXPECT_NE(error_of([] { DistributedSampler(3, 4, 1, true, 0, true); }).find("larger than"),
            std::string::npos);
  EXPECT_NO_THROW(DistributedSampler(4, 4, 3, true, 0, true));
}

TEST(ExactSampler, EveryIndexExactlyOnce) {
  for (size_t n : {1, 2, 7, 10, 11, 97}) {
    for (int world : {1, 2, 3, 4, 8}) {
      std::vector<int> count(n, 0);
      size_t total = 0, lo = n, hi = 0;
      for (int r = 0; r < world; ++r) {
        auto s = DistributedSampler::exact(n, world, r);
        EXPECT_TRUE(s.is_exact());
        EXPECT_EQ(s.total_size(), n);
        EXPECT_EQ(s.num_samples(), s.indices().size());
        s.set_epoch(3);  // never shuffled
        for (size_t k = 0; k < s.indices().size(); ++k) {
          EXPECT_EQ(s.indices()[k], size_t(r) + k * world);
          ++count.at(s.indices()[k]);
        }
        total += s.num_samples();
        lo = std::min(lo, s.num_samples());
        hi = std::max(hi, s.num_samples());
      }
      EXPECT_EQ(total, n);
      EXPECT_LE(hi - lo, 1u);
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(count[i], 1) << "index " << i;
    }
  }
  auto s = DistributedSampler::exact(10, 3, 1);
  s.set_start(2);
  EXPECT_EQ(s.indices(), (std::vector<size_t>{7}));
  EXPECT_THROW(DistributedSampler::exact(10, 3, 3), Error);
  EXPECT_THROW(DistributedSampler::exact(0, 3, 0), Error);
}
