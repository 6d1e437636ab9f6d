#include "runtime/comm/fused_check.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "runtime/comm/mpi_fingerprint.h"
#include "runtime/core/error.h"
#include "runtime/core/half_float.h"

namespace dp {
namespace {

constexpr int kTag = 0x4643;  // "FC": no other point-to-point message on the group's comm uses it
constexpr int kPairTag = 0x4644;  // the finished halves of run_pair, after the check
constexpr uint32_t kNoPayload = 0;
// run_pair's first message carries half of `count` elements: a kind of its own, so that a rank
// carrying a whole payload (run) and one carrying a half (run_pair) fail the check.
constexpr uint32_t kHalfPayload = 0x80000000u;
// run_pair's first message at most: TCP's eager limit in Open MPI (btl_tcp_eager_limit, 64 KiB).
// A larger one waits for the receiver's handshake, a round trip of its own, and its half must
// first be copied behind the header: above it the check and then the ring are as fast.
constexpr size_t kPairMaxMessage = size_t(64) << 10;

// 64 bytes, so that the payload behind it starts on a cache line of the buffer.
struct Header {
  uint64_t hash_max = 0;      // max over the ranks so far of the (payload-folded) hash
  uint64_t hash_not_min = 0;  // max of ~hash, i.e. ~min
  uint64_t count = 0;         // payload elements
  uint32_t kind = kNoPayload;
  uint32_t reserved = 0;
  uint64_t pad[4] = {};
};
static_assert(sizeof(Header) == 64, "the payload starts one cache line in");
constexpr size_t kWords = FusedCheck::kHeaderWords;
static_assert(sizeof(Header) == kWords * sizeof(uint64_t), "the header's size in words");

uint32_t payload_kind(DType dtype, ReduceOp op) {
  if (op == ReduceOp::avg) op = ReduceOp::sum;  // scaled by the caller
  return 1 + uint32_t(dtype) * 8 + uint32_t(op);
}

DType kind_dtype(uint32_t kind) {
  return static_cast<DType>((kind - 1) / 8);
}
ReduceOp kind_op(uint32_t kind) {
  return static_cast<ReduceOp>((kind - 1) % 8);
}

// splitmix64's finaliser over the hash and the payload's shape.
uint64_t fold(uint64_t hash, uint32_t kind, uint64_t count) {
  uint64_t z = hash ^ (count * 0x9e3779b97f4a7c15ull + kind);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

float add(float a, float b) {
  return a + b;
}
// int32 sums wrap, as MPI_SUM's do (in unsigned arithmetic: signed overflow is undefined).
int32_t add(int32_t a, int32_t b) {
  return int32_t(uint32_t(a) + uint32_t(b));
}

// y = op(x, y) over n elements of T. The buffers are raw words: values go through copies of
// one L1-sized block at a time, which the compiler turns into plain vector loads.
constexpr size_t kBlockBytes = 4096;

// f(a, b, m): b[0, m) = combine(a, b) for one block of n elements of T, copied in from x and
// y and b copied back to y.
template <typename T, typename F>
void for_each_block(const unsigned char* x, unsigned char* y, size_t n, F f) {
  constexpr size_t kBlock = kBlockBytes / sizeof(T);
  T a[kBlock], b[kBlock];
  for (size_t lo = 0; lo < n; lo += kBlock) {
    const size_t m = std::min(kBlock, n - lo);
    std::memcpy(a, x + lo * sizeof(T), m * sizeof(T));
    std::memcpy(b, y + lo * sizeof(T), m * sizeof(T));
    f(a, b, m);
    std::memcpy(y + lo * sizeof(T), b, m * sizeof(T));
  }
}

// min and max that give the same bits whichever partner calls them (the two partners of a
// step pass their operands in opposite orders): std::min(a, b) returns a for a NaN b and
// keeps whichever zero comes first, so partners ended with different values. A NaN wins (as
// a quiet NaN), and -0 is below +0.
float lowest(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<float>::quiet_NaN();
  if (a == b) return std::signbit(a) ? a : b;
  return a < b ? a : b;
}
float highest(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<float>::quiet_NaN();
  if (a == b) return std::signbit(a) ? b : a;
  return a > b ? a : b;
}
int32_t lowest(int32_t a, int32_t b) {
  return std::min(a, b);
}
int32_t highest(int32_t a, int32_t b) {
  return std::max(a, b);
}

template <typename T>
void combine_values(const unsigned char* x, unsigned char* y, size_t n, ReduceOp op) {
  for_each_block<T>(x, y, n, [op](const T* a, T* b, size_t m) {
    if (op == ReduceOp::min) {
      for (size_t i = 0; i < m; ++i) b[i] = lowest(a[i], b[i]);
    } else if (op == ReduceOp::max) {
      for (size_t i = 0; i < m; ++i) b[i] = highest(a[i], b[i]);
    } else {
      for (size_t i = 0; i < m; ++i) b[i] = add(a[i], b[i]);
    }
  });
}

// 16-bit floats add in float32 and round at every combine, as the unfused MPI path does.
template <typename H>
void combine_halves(const unsigned char* x, unsigned char* y, size_t n) {
  for_each_block<H>(x, y, n, [](const H* a, H* b, size_t m) {
    for (size_t i = 0; i < m; ++i) b[i] = narrow<H>(widen(a[i]) + widen(b[i]));
  });
}

void combine_payload(uint32_t kind, size_t n, const unsigned char* in, unsigned char* io) {
  const ReduceOp op = kind_op(kind);
  switch (kind_dtype(kind)) {
    case DType::f32:
      return combine_values<float>(in, io, n, op);
    case DType::i32:
      return combine_values<int32_t>(in, io, n, op);
    case DType::bf16:
      return combine_halves<bf16>(in, io, n);
    case DType::f16:
      return combine_halves<f16>(in, io, n);
  }
}

std::string mpi_text(int rc) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return fmt::format("{} (MPI error code {})", std::string(text, size_t(len)), rc);
}

void check_rc(int rc, const char* call, int peer, const Fingerprint& fp) {
  DP_CHECK(rc == MPI_SUCCESS, "collective {}: {} with rank {} (desync check) failed: {}", fp.text(),
           call, peer, mpi_text(rc));
}

Header read_header(const std::vector<uint64_t>& buf) {
  Header h;
  std::memcpy(static_cast<void*>(&h), buf.data(), sizeof(h));
  return h;
}

void write_header(std::vector<uint64_t>& buf, const Header& h) {
  std::memcpy(buf.data(), &h, sizeof(h));
}

// Not for run_pair's half messages: run() combines only a payload of its own kind.
size_t payload_bytes(const Header& h) {
  return h.kind == kNoPayload ? 0 : size_t(h.count) * dtype_size(kind_dtype(h.kind));
}

unsigned char* payload(std::vector<uint64_t>& buf) {
  return reinterpret_cast<unsigned char*>(buf.data() + kWords);
}

}  // namespace

FusedCheck::FusedCheck(size_t max_bytes) : max_bytes_(std::min(max_bytes, kLimitBytes)) {}

bool FusedCheck::fits(const Tensor& t, ReduceOp op) const {
  if (t.nbytes() > max_bytes_) return false;
  // What check_allreduce accepts; 16-bit floats only sum (and avg).
  return !is_half_float(t.dtype()) || op == ReduceOp::sum || op == ReduceOp::avg;
}

void FusedCheck::run(MPI_Comm comm, const Fingerprint& fp, Tensor* t, ReduceOp op) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  Header h;
  if (t != nullptr) {
    h.kind = payload_kind(t->dtype(), op);
    h.count = t->numel();
  }
  const uint64_t folded = fold(fp.hash, h.kind, h.count);
  h.hash_max = folded;
  h.hash_not_min = ~folded;
  const size_t bytes = payload_bytes(h);
  mine_.resize(kWords + (bytes + sizeof(uint64_t) - 1) / sizeof(uint64_t));
  write_header(mine_, h);
  if (bytes > 0) std::memcpy(payload(mine_), t->raw(), bytes);

  // Recursive doubling over the largest power of two p2 <= size; rank p2 + i first hands its
  // message to rank i and at the end takes rank i's result (MPICH's scheme for the rest).
  int p2 = 1;
  while (p2 * 2 <= size) p2 *= 2;
  const int extra = size - p2;
  if (rank >= p2) {
    send(comm, rank - p2, fp);
    receive(comm, rank - p2, fp, /*adopt=*/true);
  } else {
    if (rank < extra) receive(comm, rank + p2, fp, /*adopt=*/false);
    for (int mask = 1; mask < p2; mask <<= 1) exchange(comm, rank ^ mask, fp);
    if (rank < extra) send(comm, rank + p2, fp);
  }

  const Header out = read_header(mine_);
  if (out.hash_max != ~out.hash_not_min) {
    // Every rank saw the same maximum and minimum, so every rank is here. The payload's
    // shape names ranks that agree on the collective but carry different payloads (their
    // options differ).
    const std::string how = t ? fmt::format("its {} values in the desync check", t->numel())
                              : std::string("the desync check alone");
    name_mismatch(comm, fp, std::chrono::milliseconds(0), folded, how);  // throws, `t` untouched
  }
  if (bytes > 0) std::memcpy(t->raw(), payload(mine_), bytes);
}

bool FusedCheck::pair_fits(const Tensor& t, ReduceOp op, int world) const {
  return world == 2 && t.dtype() == DType::f32 && (op == ReduceOp::sum || op == ReduceOp::avg) &&
         !fits(t, op) && sizeof(Header) + (t.numel() + 1) / 2 * sizeof(float) <= kPairMaxMessage;
}

void FusedCheck::run_pair(MPI_Comm comm, const Fingerprint& fp, Tensor& t, ReduceOp op) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const int peer = 1 - rank;
  const size_t n = t.numel(), split = n / 2;
  float* data = t.f32();
  // Rank 0 owns [0, split), rank 1 [split, n).
  float* own = data + (rank == 0 ? 0 : split);
  float* other = data + (rank == 0 ? split : 0);
  const size_t own_n = rank == 0 ? split : n - split, other_n = n - own_n;

  Header h;
  h.kind = payload_kind(DType::f32, op) | kHalfPayload;
  h.count = n;
  const uint64_t folded = fold(fp.hash, h.kind, h.count);
  h.hash_max = folded;
  h.hash_not_min = ~folded;
  mine_.resize(kWords + (other_n * sizeof(float) + sizeof(uint64_t) - 1) / sizeof(uint64_t));
  write_header(mine_, h);
  std::memcpy(payload(mine_), other, other_n * sizeof(float));
  MPI_Status status;
  {
    WaitingFor waiting(recorder_, peer, "desync check, with the first halves");
    check_rc(MPI_Sendrecv(mine_.data(), int(mine_.size()), MPI_UINT64_T, peer, kTag, inbox(),
                          int(kInboxWords), MPI_UINT64_T, peer, kTag, comm, &status),
             "MPI_Sendrecv", peer, fp);
  }
  const size_t words = received_words(status, peer, fp);
  Header in;
  std::memcpy(static_cast<void*>(&in), theirs_.get(), sizeof(in));
  // Both ranks compare the same two hashes: both pass, or both name the mismatch.
  if (in.hash_max != folded || in.hash_not_min != ~folded) {
    name_mismatch(comm, fp, std::chrono::milliseconds(0), folded,
                  fmt::format("its {} values in halves with the desync check", n));
  }
  DP_CHECK(words * sizeof(uint64_t) >= sizeof(Header) + own_n * sizeof(float),
           "collective {}: rank {} sent {} bytes for a half of {} float32 values", fp.text(), peer,
           words * 8, n);
  // own = own + theirs, as the peer adds its own half: every element is summed once, by one
  // rank, and float addition commutes, so both ranks end with the same bits. The inbox's
  // words reach the floats through one L1-sized copy at a time.
  const unsigned char* theirs = reinterpret_cast<const unsigned char*>(theirs_.get() + kWords);
  constexpr size_t kBlock = kBlockBytes / sizeof(float);
  float block[kBlock];
  for (size_t lo = 0; lo < own_n; lo += kBlock) {
    const size_t m = std::min(kBlock, own_n - lo);
    std::memcpy(block, theirs + lo * sizeof(float), m * sizeof(float));
    for (size_t i = 0; i < m; ++i) own[lo + i] += block[i];
  }
  WaitingFor waiting(recorder_, peer, "the finished halves");
  check_rc(MPI_Sendrecv(own, int(own_n), MPI_FLOAT, peer, kPairTag, other, int(other_n), MPI_FLOAT,
                        peer, kPairTag, comm, MPI_STATUS_IGNORE),
           "MPI_Sendrecv (finished halves)", peer, fp);
}

void FusedCheck::send(MPI_Comm comm, int peer, const Fingerprint& fp) {
  const int n = int(mine_.size());
  // A send blocks too, until the peer takes a message larger than the eager limit.
  WaitingFor waiting(recorder_, peer, "desync check");
  check_rc(MPI_Send(mine_.data(), n, MPI_UINT64_T, peer, kTag, comm), "MPI_Send", peer, fp);
}

uint64_t* FusedCheck::inbox() {
  // Room for any message a rank can send (no payload exceeds kLimitBytes, whatever a rank's
  // options), so a receive posted before the message arrives never truncates it: MPI then
  // matches it on arrival instead of queueing it as unexpected. Uninitialised: only the
  // pages that messages reach are ever touched.
  if (!theirs_) theirs_.reset(new uint64_t[kInboxWords]);
  return theirs_.get();
}

void FusedCheck::receive(MPI_Comm comm, int peer, const Fingerprint& fp, bool adopt) {
  MPI_Status status;
  {
    WaitingFor waiting(recorder_, peer, "desync check");
    check_rc(MPI_Recv(inbox(), int(kInboxWords), MPI_UINT64_T, peer, kTag, comm, &status),
             "MPI_Recv", peer, fp);
  }
  combine_received(received_words(status, peer, fp), adopt);
}

void FusedCheck::exchange(MPI_Comm comm, int peer, const Fingerprint& fp) {
  MPI_Status status;
  {
    WaitingFor waiting(recorder_, peer, "desync check");
    check_rc(MPI_Sendrecv(mine_.data(), int(mine_.size()), MPI_UINT64_T, peer, kTag, inbox(),
                          int(kInboxWords), MPI_UINT64_T, peer, kTag, comm, &status),
             "MPI_Sendrecv", peer, fp);
  }
  combine_received(received_words(status, peer, fp), /*adopt=*/false);
}

size_t FusedCheck::received_words(const MPI_Status& status, int peer, const Fingerprint& fp) {
  int words = 0;
  check_rc(MPI_Get_count(&status, MPI_UINT64_T, &words), "MPI_Get_count", peer, fp);
  DP_CHECK(words >= int(kWords), "collective {}: rank {} sent a {}-byte desync check message",
           fp.text(), peer, words * 8);
  return size_t(words);
}

void FusedCheck::combine_received(size_t words, bool adopt) {
  Header in;
  std::memcpy(static_cast<void*>(&in), theirs_.get(), sizeof(in));
  Header h = read_header(mine_);
  const bool same_payload = in.kind == h.kind && in.count == h.count &&
                            words * sizeof(uint64_t) >= sizeof(Header) + payload_bytes(in);
  if (adopt) {
    // The final result, from the rank this one handed its message to.
    h.hash_max = in.hash_max;
    h.hash_not_min = in.hash_not_min;
    if (same_payload)
      std::memcpy(payload(mine_), reinterpret_cast<const unsigned char*>(theirs_.get() + kWords),
                  payload_bytes(h));
  } else {
    h.hash_max = std::max(h.hash_max, in.hash_max);
    h.hash_not_min = std::max(h.hash_not_min, in.hash_not_min);
    // Different payloads come with different folded hashes: the check fails, so nothing
    // here needs to be right, only not to read past what arrived.
    if (same_payload && h.kind != kNoPayload) {
      combine_payload(h.kind, size_t(h.count),
                      reinterpret_cast<const unsigned char*>(theirs_.get() + kWords),
                      payload(mine_));
    }
  }
  write_header(mine_, h);
}

}  // namespace dp
