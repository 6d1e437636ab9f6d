// The collective fingerprint the ranks compare before any data moves
// (runtime/comm/fingerprint.h): every field that shapes the data movement changes the hash,
// the device does not, and the text names the collective as the mismatch error shows it.
// The comparison across ranks is tests/mpi/test_desync.cpp.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "runtime/comm/fingerprint.h"

using namespace dp;

TEST(Fingerprint, EveryFieldOfTheDataMovementChangesTheHash) {
  const uint64_t base = collective_hash(CollectiveKind::allreduce, 1, DType::f32, 1024, "bucket 3");
  std::set<uint64_t> hashes = {
      base,
      collective_hash(CollectiveKind::broadcast, 1, DType::f32, 1024, "bucket 3"),
      collective_hash(CollectiveKind::allreduce, 0, DType::f32, 1024, "bucket 3"),
      collective_hash(CollectiveKind::allreduce, 1, DType::bf16, 1024, "bucket 3"),
      collective_hash(CollectiveKind::allreduce, 1, DType::f32, 1025, "bucket 3"),
      collective_hash(CollectiveKind::allreduce, 1, DType::f32, 1024, "bucket 4"),
      collective_hash(CollectiveKind::allreduce, 1, DType::f32, 1024, "bucket 3 "),
  };
  EXPECT_EQ(hashes.size(), 7u) << "two different collectives share a hash";
  EXPECT_EQ(base, collective_hash(CollectiveKind::allreduce, 1, DType::f32, 1024, "bucket 3"));

  const std::string d = "allreduce(avg) float32[1024] 'bucket 3'";
  const Fingerprint f = make_fingerprint(12, base, d);
  EXPECT_EQ(f.seq, 12u);
  EXPECT_NE(f.hash, make_fingerprint(13, base, d).hash) << "the seq is part of it";
  EXPECT_EQ(f.hash, make_fingerprint(12, base, "another text, on cuda:1").hash)
      << "the description (which names the device) is not";
  std::set<uint64_t> places = {f.hash, f.in_shared_buffer(0, 0).hash, f.in_shared_buffer(0, 8).hash,
                               f.in_shared_buffer(1, 0).hash, f.outside_shared_memory().hash};
  EXPECT_EQ(places.size(), 5u) << "where the data is must change the hash";
}

TEST(Fingerprint, TheTextNamesTheCollectiveAndWhereItsDataIs) {
  const std::string d = "allreduce(avg) float32[1024] 'bucket 3'";
  const Fingerprint f = make_fingerprint(12, 99, d);
  EXPECT_EQ(f.text(), "#12 allreduce(avg) float32[1024] 'bucket 3'");
  EXPECT_EQ(f.in_shared_buffer(2, 64).text(),
            "#12 allreduce(avg) float32[1024] 'bucket 3' in shared buffer #2 at element 64");
  EXPECT_EQ(f.outside_shared_memory().text(),
            "#12 allreduce(avg) float32[1024] 'bucket 3' outside shared memory");
  const std::string want =
      "ranks disagree on a collective: rank 0 is in #12 allreduce(avg) float32[1024] 'bucket 3' "
      "but rank 1 is in #12 allreduce(avg) float32[1] 'step loss'. ";
  EXPECT_EQ(fingerprint_mismatch(0, f.text(), 1, "#12 allreduce(avg) float32[1] 'step loss'")
                .substr(0, want.size()),
            want);
}
