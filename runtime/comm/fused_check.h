#pragma once
// The MPI backend's desync check (runtime/comm/mpi_fingerprint.h) with a small all-reduce
// riding in the same message. The check is an all-reduce of a fixed-size message whatever
// the collective (every rank must make the same call, or a mismatched pair could hang), so
// its room costs nothing extra: an all-reduce of up to kFusedBytes (the step's loss, eval
// totals, a small bucket) travels inside the check, and checking it costs no second round.
//
// The message's combine (a user-defined MPI op) takes the maximum of {hash, ~hash} and
// reduces the payloads only when both sides carry the same kind of payload; when the hashes
// differ the payload is garbage and nobody uses it. Payload reductions follow the unfused
// paths: float32 and int32 sum/min/max in their type, bfloat16/float16 sums in float32
// rounded at every combine; avg is the sum scaled after. Every rank gets the same bits:
// MPI combines one message (count 1, never split) and float addition commutes.
#include <mpi.h>

#include <chrono>
#include <cstddef>

#include "runtime/comm/fingerprint.h"
#include "runtime/comm/process_group.h"
#include "runtime/core/tensor.h"

namespace dp {

class FusedCheck {
 public:
  static constexpr size_t kFusedBytes = 1024;

  FusedCheck();  // after MPI_Init
  ~FusedCheck();
  FusedCheck(const FusedCheck&) = delete;
  FusedCheck& operator=(const FusedCheck&) = delete;

  // Whether an all-reduce of `t` with `op` can ride in the check (decided alike on every
  // rank: it depends only on what the fingerprint covers).
  static bool fits(const Tensor& t, ReduceOp op);

  // Collective over `comm`: checks `fp` on every rank, and with `t` (fits(*t, op)) also
  // all-reduces it in place, avg dividing by the world size. A mismatch is a CollectiveError
  // naming both sides (the same on every rank) and leaves `t` as it was.
  void run(MPI_Comm comm, const Fingerprint& fp, Tensor* t = nullptr,
           ReduceOp op = ReduceOp::sum) const;

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
  MPI_Op op_ = MPI_OP_NULL;
};

}  // namespace dp
