#pragma once
// Intra-node all-reduce over MPI-3 shared memory. When every rank of a communicator runs on
// one node, the buffers a process group allocate()s live in shared windows that every rank
// maps, and an all-reduce of float32 in them needs no message at all: after a barrier, rank
// r sums slice r of every rank's buffer (in rank order, so the result is bit-identical on
// every rank and run to run) and writes the sum into every rank's buffer; a second barrier
// ends it (bfloat16 and float16 buffers: widened and summed in float32, rounded once). Per rank
// that is one read and one write of the buffer in memory traffic, no copies and no scratch, where
// the ring (reduce-scatter + all-gather over MPI_Sendrecv, copies through the MPI library) moves
// about 3.5x the buffer: on a node whose cores are busy with backward, that traffic is training
// time.
//
// Who touches a buffer when (why no lock is needed). Rank r's buffer B_r of a bucket is
// written by rank r's own threads (backward, zero_grad, the optimizer) only outside its
// all-reduces: between launching one and its Work completing, the Reducer leaves the bucket
// alone. Within an all-reduce other ranks touch B_r only between barrier 1 and barrier 2:
// barrier 1 starts when the LAST rank launched it, i.e. when every rank's gradients are
// final (its release publishes them, its acquire makes them visible); every rank then reads
// all B_q and writes only its own slice of each, so slices never overlap (they start on
// 64-byte boundaries of the tensor: no false sharing between reducers); barrier 2 ends when
// the last rank has written its slice, so when a Work completes every slice of B_r is final
// and no other rank will touch B_r again before rank r launches the next collective on it.
//
// The barriers live in a small control window: a generation counter and an arrival count
// in one 64-bit word changed only by CAS, so a rank that times out can withdraw its arrival
// atomically (either the barrier completed first and it goes on, or it withdraws and the
// barrier never completes without it): a dead peer yields a dp::Error on the live ranks
// after the timeout, naming the collective and the ranks that never arrived, not a hang.
//
// A timeout poisons the group for good, on every rank. A rank that gave up and went on to
// its next collective would otherwise arrive at a barrier that a late rank still counts as
// the failed collective's, complete it, and from then on the two would pair different
// collectives: the late rank's complete "ok" with slices nobody reduced. So the rank that
// gives up (after withdrawing) sets a failed word in the control block, naming itself and
// the collective; every rank checks it before arriving at any barrier and while waiting, and
// every later collective of the group fails on every rank, naming who poisoned it and where.
// The buffers of the failed collective hold partial sums on every rank: unusable.
//
// Desync check: before barrier 1 (or the one barrier of check(), which every collective of
// the group that moves its data through MPI passes first) each rank publishes its
// collective's fingerprint hash (runtime/comm/fingerprint.h) in its slot; after the barrier
// every rank compares all of them with rank 0's. A mismatch is the same CollectiveError on
// every rank, before any data moves: only then do the ranks write out their descriptions and
// meet once more, so that the message names both sides. Fingerprints alternate by seq
// parity, so a rank that has gone on to the next collective never overwrites one that is
// still being read.
#include <mpi.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/comm/comm_faults.h"
#include "runtime/comm/fingerprint.h"
#include "runtime/core/tensor.h"

namespace dp {

class FlightRecorder;

// One allocate()d buffer: an MPI shared window and where every rank's part of it is mapped
// in this process.
struct ShmBuffer {
  MPI_Win win = MPI_WIN_NULL;
  size_t index = 0;         // allocation order, the same on every rank
  size_t bytes = 0;         // usable from each rank's data start (the same on every rank)
  std::vector<char*> data;  // data[q]: rank q's buffer, 64-byte aligned
};

class ShmAllreduce {
 public:
  // Collective over `comm` (every rank calls it, whatever it wants). Returns null, on every
  // rank alike, unless `wanted` on every rank, the communicator has more than one rank and
  // all of them share one node whose MPI gives coherent shared windows (MPI_WIN_UNIFIED).
  static std::unique_ptr<ShmAllreduce> create(MPI_Comm comm, bool wanted,
                                              std::chrono::milliseconds timeout);
  // Frees every window and the node communicator: collective. Destroyed while an exception
  // unwinds, it frees nothing, since the other ranks may never get there and a collective
  // free would hang the job instead of letting it end; the process exit reclaims it.
  ~ShmAllreduce();
  ShmAllreduce(const ShmAllreduce&) = delete;
  ShmAllreduce& operator=(const ShmAllreduce&) = delete;

  // A zero-filled buffer of `numel` elements in a new shared window. Collective over the
  // node: the process group calls it on its communication thread, so it never runs beside
  // another of the group's collectives.
  Tensor allocate(size_t numel, DType dtype);

  // The buffer that holds all of [p, p + bytes) in this rank's segment, or null.
  const ShmBuffer* find(const void* p, size_t bytes) const;

  // In place over `t`, which lies in `buf`: sum (or average) over the ranks. Every rank
  // calls it with the same tensor position, size and dtype; `fp` (runtime/comm/fingerprint.h)
  // names the collective and is compared across ranks first. float32, bfloat16 and float16:
  // a 16-bit tensor is widened, summed in float32 in rank order, scaled (avg) and rounded
  // once, to nearest even, so the result is bit-identical on every rank and is the float32
  // reduction of the 16-bit inputs, rounded (what the compressing comm hooks want: no error
  // piles up per rank).
  void allreduce(const ShmBuffer& buf, Tensor& t, bool average, const Fingerprint& fp);

  // The desync check of a collective that moves its data some other way (MPI), in one
  // barrier: every collective of the group passes either this or allreduce(), so the
  // ranks compare every collective and a rank that gave up is never paired with another's
  // next one. Throws CollectiveError on a mismatch, CollectiveTimeout on a timeout or when
  // the group is poisoned. `timeout` (0: the group's) bounds the wait for the others.
  void check(const Fingerprint& fp,
             std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  // The pieces the hierarchical all-reduce (runtime/comm/hierarchical_allreduce.h) builds on,
  // where this group is one node of several. compare(): publish `fp`, pass barrier 1 (an
  // all-reduce: `first`) or the check barrier, compare every rank's fingerprint, and return
  // the mismatch's message ("" when they agree) instead of throwing it, so that the caller
  // still meets the other nodes before every rank throws. finish(): the all-reduce's last
  // barrier (every rank wrote its part). A timeout throws and poisons, as everywhere.
  std::string compare(const Fingerprint& fp, bool first);
  void finish(const Fingerprint& fp);
  int rank() const { return rank_; }
  int size() const { return size_; }
  // The ranks messages name: `names[q]` for node rank q (the world rank), not q.
  void set_rank_names(std::vector<int> names) { names_ = std::move(names); }
  // Where a barrier that waits past its spinning notes the ranks it waits for
  // (FlightRecorder::set_waiting_at), so that a Work's timeout on the caller's thread, whose
  // deadline may come first, names the stuck rank too. Null: nowhere.
  void set_recorder(FlightRecorder* recorder) { recorder_ = recorder; }

 private:
  struct Control;
  struct Slot;
  struct PoisonNote;
  struct Record;

  ShmAllreduce(MPI_Comm node, int rank, int size, std::chrono::milliseconds timeout);
  Control& control() const;
  Slot& slot(int rank) const;
  PoisonNote& note() const;
  Record& record(int rank, uint64_t seq) const;
  // Arrives at barrier `which` (shm_layout::Barrier) of collective `fp` and waits for the others:
  // CollectiveTimeout, and the group poisoned, when they do not all arrive within `timeout`.
  void barrier(int which, const Fingerprint& fp, std::chrono::milliseconds timeout);
  // Publishes `fp` in this rank's record, passes barrier `which` and compares every rank's
  // record: a CollectiveError on a mismatch.
  void arrive_and_compare(const Fingerprint& fp, int which, std::chrono::milliseconds timeout);
  std::string arrive_and_compare_quiet(const Fingerprint& fp, int which,
                                       std::chrono::milliseconds timeout);
  int name(int q) const { return names_.empty() ? q : names_[size_t(q)]; }
  // Poisons the group, noting `timeout`, the wait this rank gave up after.
  void poison(const Fingerprint& fp, int which, std::chrono::milliseconds timeout);
  void throw_if_poisoned(const Fingerprint& fp) const;

  MPI_Comm node_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::chrono::milliseconds timeout_;
  ShmStall stall_;  // a test hook, inactive unless DPRUN_FAULT_SHM_STALL names this rank
  MPI_Win control_win_ = MPI_WIN_NULL;
  char* control_base_ = nullptr;  // rank 0's segment of the control window
  std::vector<std::shared_ptr<ShmBuffer>> buffers_;
  std::vector<int> names_;  // empty: node ranks are the ranks messages name
  FlightRecorder* recorder_ = nullptr;
  // Every rank's view of the tensor being reduced (one per dtype: no pointer punning).
  std::vector<float*> ptrs_f32_;
  std::vector<bf16*> ptrs_bf16_;
  std::vector<f16*> ptrs_f16_;
};

}  // namespace dp
