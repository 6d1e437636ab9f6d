#include <gtest/gtest.h>

#include "runtime/core/error.h"
#include "runtime/ddp/bucket_assignment.h"
#include "runtime/ddp/replica_check.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using Buckets = std::vector<std::vector<size_t>>;

TEST(BucketAssignment, FirstBucketHasItsOwnSmallerCap) {
  // Sizes in bytes; walk order 3,2,1,0 (reverse registration).
  std::vector<size_t> bytes = {400, 100, 300, 50};
  Buckets b = assign_buckets({3, 2, 1, 0}, bytes, /*first*/ 100, /*cap*/ 500);
  // First bucket: 50, then 300 would exceed 100 -> closed. Then 300+100 = 400 <= 500;
  // +400 exceeds -> closed. Then 400.
  EXPECT_EQ(b, (Buckets{{3}, {2, 1}, {0}}));
}

TEST(BucketAssignment, CapsAreRespectedExceptForSingleLargeParameters) {
  std::vector<size_t> bytes = {1000, 10, 10, 10, 10};
  Buckets b = assign_buckets({4, 3, 2, 1, 0}, bytes, 25, 25);
  EXPECT_EQ(b, (Buckets{{4, 3}, {2, 1}, {0}}));
  for (const auto& bucket : b) {
    size_t total = 0;
    for (size_t p : bucket) total += bytes[p];
    EXPECT_TRUE(total <= 25 || bucket.size() == 1);
  }
}

TEST(BucketAssignment, EverythingFitsInOneBucket) {
  Buckets b = assign_buckets({2, 1, 0}, {4, 4, 4}, 1 << 20, 25 << 20);
  EXPECT_EQ(b, (Buckets{{2, 1, 0}}));
}

TEST(BucketAssignment, FollowsTheGivenOrder) {
  Buckets b = assign_buckets({0, 2, 1}, {8, 8, 8}, 8, 16);
  EXPECT_EQ(b, (Buckets{{0}, {2, 1}}));
}

TEST(BucketAssignment, RejectsBadOrders) {
  EXPECT_THROW(assign_buckets({0, 0}, {4, 4}, 8, 8), Error);
  EXPECT_THROW(assign_buckets({0}, {4, 4}, 8, 8), Error);
  EXPECT_THROW(assign_buckets({5}, {4}, 8, 8), Error);
  EXPECT_THROW(assign_buckets({0}, {4}, 0, 8), Error);
}

TEST(BucketAssignment, MegabytesAreMebibytesAndFractionsWork) {
  EXPECT_EQ(mb_to_bytes(1), 1048576u);
  EXPECT_EQ(mb_to_bytes(0.1), 104858u);
  EXPECT_EQ(mb_to_bytes(25), 25u * 1048576u);
  EXPECT_THROW(mb_to_bytes(0), Error);
  EXPECT_THROW(mb_to_bytes(-1), Error);
  EXPECT_THROW(mb_to_bytes(1e-9), Error);
}

TEST(BucketAssignment, HugeCapsAreRefusedNotOverflowed) {
  // 2e13 MB is 2^64.2 bytes: the conversion to size_t was undefined (it gave 0 here).
  EXPECT_EQ(mb_to_bytes(kMaxBucketMb), size_t(1) << 50);
  EXPECT_MENTIONS(dp::test::error_of([] { mb_to_bytes(2e13); }),
                  "a bucket size of 20000000000000 MB is more than 1073741824 MB (2^50 bytes)");
  EXPECT_THROW(mb_to_bytes(1e30), Error);
}

TEST(BucketAssignment, CheckAssignmentWantsEachParameterOnce) {
  EXPECT_NO_THROW(check_assignment({{2, 1}, {0}}, 3));
  EXPECT_THROW(check_assignment({{2, 1}}, 3), Error);          // misses 0
  EXPECT_THROW(check_assignment({{2, 1}, {0, 1}}, 3), Error);  // 1 twice
  EXPECT_THROW(check_assignment({{2, 1}, {0, 3}}, 3), Error);  // no parameter 3
  EXPECT_THROW(check_assignment({{2, 1, 0}, {}}, 3), Error);   // an empty bucket
}

TEST(ReplicaCheck, EntryIsNameDtypeAndShape) {
  Parameter p("fc1.weight", {4, 3});
  EXPECT_EQ(replica_entry(p.name, p.value), "fc1.weight float32[4, 3]");
  EXPECT_EQ(parameter_signature({&p}), std::vector<std::string>{"fc1.weight float32[4, 3]"});
}

TEST(ReplicaCheck, IdenticalReplicasPass) {
  std::vector<std::string> sig = {"fc1.weight float32[4, 3]", "fc1.bias float32[4]"};
  EXPECT_EQ(describe_replica_mismatch({sig, sig, sig}), "");
}

TEST(ReplicaCheck, NamesTheFirstDifferenceAndTheRanks) {
  std::vector<std::string> a = {"fc1.weight float32[4, 3]", "fc1.bias float32[4]"};
  std::vector<std::string> b = {"fc1.weight float32[4, 3]", "fc1.bias float32[5]"};
  std::string msg = describe_replica_mismatch({a, a, b});
  EXPECT_NE(msg.find("parameter #1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'fc1.bias float32[4]' on rank 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'fc1.bias float32[5]' on rank 2"), std::string::npos) << msg;
}

TEST(ReplicaCheck, DifferentParameterCounts) {
  std::vector<std::string> a = {"fc1.weight float32[4, 3]", "fc1.bias float32[4]"};
  std::vector<std::string> b = {"fc1.weight float32[4, 3]"};
  std::string msg = describe_replica_mismatch({b, a});
  EXPECT_NE(msg.find("rank 0 has 1 parameters, rank 1 has 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'fc1.bias float32[4]' on rank 1"), std::string::npos) << msg;
}
