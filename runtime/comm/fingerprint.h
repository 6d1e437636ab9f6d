#pragma once
// The identity of one collective, compared across ranks before any of its data moves
// (DESIGN.md, "Desync and hangs"): its sequence number and a 64-bit hash of what shapes the
// data movement (kind, reduce op or root, dtype, element count, tag: the bucket), plus a
// description for the message. Ranks compare the hashes only; the descriptions are read or
// exchanged only when the hashes differ, so that the error names both sides.
//
// The hash leaves out the device (rank r may run on cuda:r) and the shape (an element count
// is what the wire sees), so it says "the same collective" exactly when the data movement
// is the same.
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/comm/process_group.h"
#include "runtime/core/dtype.h"

namespace dp {

enum class CollectiveKind : uint8_t { allreduce, broadcast, allgather, barrier, allocate };

struct Fingerprint {
  uint64_t seq = 0;
  uint64_t hash = 0;                         // covers seq too
  const std::string* description = nullptr;  // the Work's (it outlives every check)
  // Where the collective's data is, when that narrows it (the shared-memory all-reduce
  // needs the same view of the same buffer on every rank): a shared buffer and an element
  // offset in it, or "outside shared memory" (shared_buffer == kOutside).
  static constexpr int64_t kNowhere = -1, kOutside = -2;
  int64_t shared_buffer = kNowhere;
  uint64_t shared_offset = 0;

  // The same collective with its data at a known place: the place joins the hash.
  Fingerprint in_shared_buffer(size_t index, size_t element_offset) const;
  Fingerprint outside_shared_memory() const;
  // "#12 allreduce(avg) float32[1024] 'bucket 3' in shared buffer #0 at element 0": built only
  // for an error, never on the path of a collective that goes well.
  std::string text() const;
};

// The hash of a collective's data movement, before its seq is known.
uint64_t collective_hash(CollectiveKind kind, int64_t op_or_root, DType dtype, uint64_t count,
                         const std::string& tag);
// Once the communication thread gives it its seq: `description` is the Work's, which must
// outlive the fingerprint.
Fingerprint make_fingerprint(uint64_t seq, uint64_t collective_hash,
                             const std::string& description);

// The error every rank raises alike when the fingerprints differ: the lowest rank and the
// first rank that disagrees with it, each with its description. Every rank computes it from
// the same data, so every rank's message is the same.
std::string fingerprint_mismatch(int rank_a, const std::string& what_a, int rank_b,
                                 const std::string& what_b);

}  // namespace dp
