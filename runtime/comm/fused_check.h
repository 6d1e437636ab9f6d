#pragma once
// The MPI backend's desync check (runtime/comm/mpi_fingerprint.h) with an all-reduce riding
// in the same messages. Every rank must make the same calls whatever its collective (or a
// mismatched pair could hang), so the check is dprun's own recursive doubling over
// point-to-point messages of any length: each message is a header (the running maximum of
// {hash, ~hash}, the payload's kind and count) followed by the payload, and each receiver
// learns the length from MPI_Mprobe before taking it. Ranks in different collectives thus
// still exchange the same messages with the same partners, and every rank ends knowing
// whether all hashes were equal; ranks in the same collective have meanwhile all-reduced its
// data. An all-reduce of up to max_bytes() (the step's loss, eval totals, buckets up to
// tens of KB) costs one check, not a check and then an MPI_Allreduce: the separate round
// trip was most of the time of a small all-reduce across hosts.
//
// Why not MPI_Allreduce with a user-defined op over a {header, payload} type (as before):
// its count must match on every rank, so the payload's room had to be fixed (1 KB) and
// every check paid for it.
//
// The payload's kind and count join the compared hash, so ranks that would combine
// different payloads (they disagree on the path, e.g. on an option) fail the check like a
// desync instead of mixing bytes. Payload reductions follow the unfused paths: float32 and
// int32 sum/min/max in their type, bfloat16/float16 sums in float32 rounded at every combine;
// avg is the sum scaled after. Every rank gets the same bits: both partners of a step
// combine the same two values, and float addition commutes.
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/comm/fingerprint.h"
#include "runtime/comm/flight_recorder.h"
#include "runtime/comm/process_group.h"
#include "runtime/core/tensor.h"

namespace dp {

class FusedCheck {
 public:
  // What a payload may hold at most (the group's option is clamped to it).
  static constexpr size_t kLimitBytes = size_t(4) << 20;
  // The default: measured on 2 emulated hosts (README, "Multi-host on one machine").
  static constexpr size_t kDefaultBytes = size_t(32) << 10;
  // A message: a header of this many 64-bit words, then the payload.
  static constexpr size_t kHeaderWords = 8;
  static constexpr size_t kInboxWords = kHeaderWords + kLimitBytes / sizeof(uint64_t);

  explicit FusedCheck(size_t max_bytes = kDefaultBytes);

  size_t max_bytes() const { return max_bytes_; }
  // Whether an all-reduce of `t` with `op` can ride in the check (decided alike on every
  // rank: it depends only on what the fingerprint covers and on the group's options).
  bool fits(const Tensor& t, ReduceOp op) const;

  // Collective over `comm`: checks `fp` on every rank, and with `t` (fits(*t, op)) also
  // all-reduces it in place (avg is left summed: the caller scales). A mismatch is a
  // CollectiveError naming both sides (the same on every rank) and leaves `t` as it was. Not
  // thread-safe: one caller at a time (the group's communication thread).
  void run(MPI_Comm comm, const Fingerprint& fp, Tensor* t = nullptr, ReduceOp op = ReduceOp::sum);

  // Two ranks, float32 sum or avg, a tensor too large to ride whole but whose half still goes
  // out in one eager message (pair_fits: up to about 128 KB): the check
  // rides in the first half of a two-step exchange. Each rank sends the header and the half
  // of `t` the other owns, adds what arrives to its own half, and after a check that passed
  // on both sides sends its finished half back: two messages each way, where the check and
  // then the ring took three. avg is left summed, as run() leaves it: the caller scales. A
  // mismatch is the same CollectiveError as run()'s (the messages pair with any other
  // collective's check, whose partner is the same one rank).
  bool pair_fits(const Tensor& t, ReduceOp op, int world) const;
  void run_pair(MPI_Comm comm, const Fingerprint& fp, Tensor& t, ReduceOp op);

  // Where to note each blocking receive (FlightRecorder::set_waiting_for), so that a timeout
  // names the rank whose message never came. Ranks of the communicator the calls get.
  void set_recorder(FlightRecorder* recorder) { recorder_ = recorder; }

 private:
  // One step with `peer`: sends this rank's message, receives the peer's and combines it.
  void exchange(MPI_Comm comm, int peer, const Fingerprint& fp);
  void send(MPI_Comm comm, int peer, const Fingerprint& fp);
  // Receives the peer's message; `adopt`: take its result (the last step of a rank folded
  // out of the power of two) rather than combine.
  void receive(MPI_Comm comm, int peer, const Fingerprint& fp, bool adopt);
  size_t received_words(const MPI_Status& status, int peer, const Fingerprint& fp);
  void combine_received(size_t words, bool adopt);
  uint64_t* inbox();

  size_t max_bytes_;
  std::vector<uint64_t> mine_;          // header + payload: what this rank sends, reduced in place
  std::unique_ptr<uint64_t[]> theirs_;  // what arrived (kInboxWords)
  FlightRecorder* recorder_ = nullptr;
};

}  // namespace dp
