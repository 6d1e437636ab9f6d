#include "runtime/comm/fingerprint.h"

#include <fmt/format.h>

namespace dp {
namespace {

// splitmix64's finaliser: every input bit moves every output bit, so fields that differ in
// one bit (a count of 1024 against 1025) never cancel out.
uint64_t mix(uint64_t h, uint64_t v) {
  uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t mix_string(uint64_t h, const std::string& s) {
  uint64_t fnv = 0xcbf29ce484222325ull;  // FNV-1a over the bytes, then one mix
  for (unsigned char c : s) fnv = (fnv ^ c) * 0x100000001b3ull;
  return mix(mix(h, s.size()), fnv);
}

}  // namespace

Fingerprint Fingerprint::in_shared_buffer(size_t index, size_t element_offset) const {
  Fingerprint f = *this;
  f.shared_buffer = int64_t(index);
  f.shared_offset = element_offset;
  f.hash = mix(mix(hash, 1 + index), element_offset);
  return f;
}

Fingerprint Fingerprint::outside_shared_memory() const {
  Fingerprint f = *this;
  f.shared_buffer = kOutside;
  f.hash = mix(hash, 0);
  return f;
}

std::string Fingerprint::text() const {
  std::string s = fmt::format("#{} {}", seq, description ? *description : std::string("?"));
  if (shared_buffer >= 0) {
    s += fmt::format(" in shared buffer #{} at element {}", shared_buffer, shared_offset);
  } else if (shared_buffer == kOutside) {
    s += " outside shared memory";
  }
  return s;
}

uint64_t collective_hash(CollectiveKind kind, int64_t op_or_root, DType dtype, uint64_t count,
                         const std::string& tag) {
  uint64_t h = mix(0x64707275ull, static_cast<uint64_t>(kind));  // "dpru"
  h = mix(h, static_cast<uint64_t>(op_or_root));
  h = mix(h, static_cast<uint64_t>(dtype));
  h = mix(h, count);
  return mix_string(h, tag);
}

Fingerprint make_fingerprint(uint64_t seq, uint64_t collective_hash,
                             const std::string& description) {
  Fingerprint f;
  f.seq = seq;
  f.hash = mix(collective_hash, seq);
  f.description = &description;
  return f;
}

std::string fingerprint_mismatch(int rank_a, const std::string& what_a, int rank_b,
                                 const std::string& what_b) {
  return fmt::format(
      "ranks disagree on a collective: rank {} is in {} but rank {} is in {}. Every rank must "
      "issue the same collectives (kind, op, dtype, size, tag) in the same order; this process "
      "group refuses every later collective",
      rank_a, what_a, rank_b, what_b);
}

}  // namespace dp
