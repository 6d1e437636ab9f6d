#pragma once
// Hierarchical all-reduce for groups that span several nodes with several ranks on each (the
// layout of Horovod's and NCCL's hierarchical algorithms). Without it, a 2 hosts x 2 ranks job
// sends every byte around one TCP ring of 4 ranks and the shared memory of each host goes
// unused; with it, the bytes a host sends are one host's worth, not one rank's times two.
//
// Layout (decided at construction, alike on every rank, else the flat path: see create()):
//   node comm  ranks of one node (MPI_Comm_split_type SHARED, or a test's fake split); the
//              group's shared windows and control block live over it (runtime/comm/shm_allreduce.h)
//   cross comm one per local rank index l: the l-th rank of every node, ordered by node
//              (cross rank == node index)
//
// The desync check of every collective stays the flat one: dprun's recursive doubling over
// all ranks (runtime/comm/fused_check.h), so every rank is compared with every other and a
// mismatch is the same CollectiveError, naming both ranks, everywhere. Why not a check in two
// stages (the node's shared barrier, then among one rank per node): measured on 2 emulated
// hosts x 2 ranks on 2 cores, a rank that waits at a shared barrier while its node-mate is in
// a TCP call takes the CPU that the veth's softirq needs, and a 1 KB all-reduce took 65 us
// that way against 26 us for Open MPI's MPI_Allreduce of the check (which carried the tiny
// all-reduces then, as dprun's own exchange of the check does now).
//
// An all-reduce of a buffer in the shared windows (float32, bfloat16, float16; sum or avg):
//   small (n float32 values fit the check's max_bytes()): the values (16-bit ones widened)
//      ride in the check itself, summed in float32; no shared barrier at all (each rank
//      writes only its own buffer). One exchange of messages, like the flat path.
//   otherwise (Horovod's layout), after the check:
//   1. barrier 1 (shared): every local rank launched it, its gradients are final.
//   2. local rank l sums slice l of every local buffer in local-rank order (reduce-scatter
//      through shared memory), all-reduces that slice with the l-th ranks of the other nodes
//      (L concurrent cross-node exchanges; with 2 nodes one MPI_Sendrecv each, both sides
//      adding node 0 + node 1; with more, dprun's ring), and writes the finished slice into
//      every local buffer (all-gather through shared memory, by the owner: no barrier between
//      the cross step and the copy).
//   3. barrier 2: every buffer is complete, and no rank touches another's buffer after it.
// Summation order: per node ((b_0 + b_1) + ...) in float32, then across nodes in a fixed order;
// avg multiplies once by 1/world at the end; 16-bit results are rounded once, except across 2
// nodes, where each node's sum crosses the link rounded to 16 bits (half the bytes: see
// half_two_nodes()), so twice. Every element is
// reduced by one path and copied, so all ranks hold the same bits, run after run.
//
// Hangs: the shared barriers time out (shm_timeout) and poison the node group; a dead peer in
// a cross-node MPI call leaves the caller's Work::wait() to its deadline, as the flat ring does.
#include <mpi.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/comm/fingerprint.h"
#include "runtime/comm/fused_check.h"
#include "runtime/comm/shm_allreduce.h"
#include "runtime/core/tensor.h"

namespace dp {

enum class AllreduceAlgo { automatic, flat, hierarchical };
const char* allreduce_algo_name(AllreduceAlgo algo);
// "auto", "flat", "hierarchical"; anything else is a dp::Error naming `what`.
AllreduceAlgo parse_allreduce_algo(const std::string& text, const std::string& what);

class HierarchicalAllreduce {
 public:
  // Collective over `world` (every rank calls it with the same arguments). Null, alike on
  // every rank, with `why` saying so, unless `algo` allows it, `shared_memory`, the ranks span
  // more than one node and every node has the same number L > 1 of them, and every node gets
  // coherent shared windows. `node_split` > 0 makes nodes of that many consecutive ranks
  // instead of asking MPI which ranks share memory (a test hook: the ranks must really share
  // one host, since the windows stay shared memory).
  static std::unique_ptr<HierarchicalAllreduce> create(MPI_Comm world, AllreduceAlgo algo,
                                                       int node_split, bool shared_memory,
                                                       std::chrono::milliseconds shm_timeout,
                                                       std::string* why);
  ~HierarchicalAllreduce();  // collective (frees the cross comm), like ShmAllreduce's
  HierarchicalAllreduce(const HierarchicalAllreduce&) = delete;
  HierarchicalAllreduce& operator=(const HierarchicalAllreduce&) = delete;

  ShmAllreduce& shm() const { return *shm_; }
  int nodes() const { return nodes_; }
  int local_size() const { return shm_->size(); }

  // In place over `t`, which lies in `buf` (one of shm()'s buffers): see the top of the file.
  // `check` is the group's world-wide desync check (over the communicator given to create()).
  void allreduce(const ShmBuffer& buf, Tensor& t, bool average, const Fingerprint& fp,
                 FusedCheck& check);

 private:
  HierarchicalAllreduce() = default;
  void tiny(Tensor& t, bool average, const Fingerprint& fp, FusedCheck& check);
  void sliced(const ShmBuffer& buf, size_t offset, const Tensor& t, bool average,
              const Fingerprint& fp);
  // Slice [0, m) of this rank's column, summed over the nodes in node order, in place.
  void cross_allreduce(float* work, size_t m, const Fingerprint& fp);
  // The whole sliced path for a 16-bit slice [begin, end) across 2 nodes.
  template <typename H>
  void half_two_nodes(const ShmBuffer& buf, size_t offset, size_t begin, size_t end, bool average,
                      const Fingerprint& fp);

  std::unique_ptr<ShmAllreduce> shm_;
  MPI_Comm world_comm_ = MPI_COMM_NULL;  // the group's (not owned)
  MPI_Comm cross_ = MPI_COMM_NULL;
  int world_ = 1;
  int node_index_ = 0;
  int nodes_ = 1;
  Tensor tiny_;                   // float32 staging of a tiny 16-bit all-reduce
  std::vector<float> scratch_;    // the 16-bit path's float32 slice
  std::vector<float> recv_;       // what the other node sent (2-node exchange) / ring scratch
  std::vector<uint16_t> recv16_;  // the same for 16-bit slices
};

}  // namespace dp
