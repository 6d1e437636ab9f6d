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
//              (cross rank == node index; column 0 is the node leaders)
//
// An all-reduce of a buffer in the shared windows (float32, bfloat16, float16; sum or avg):
//   1. check: every rank publishes its fingerprint in the node's control block and passes
//      barrier 1 (intra-node comparison), then every rank compares with its own column on
//      its cross comm (one small MPI_Allreduce per column, all columns at once: one network
//      round trip). Intra-node equal and column-wise equal means all ranks equal. A node
//      whose ranks disagree enters the column check with a perturbed hash, so every column
//      fails too: every rank of every node throws a CollectiveError naming both sides, and
//      no rank leaves another waiting at a barrier or in MPI.
//   2a. tiny (the float32 node sum fits FusedCheck's 1 KB): the leader sums the node's
//      buffers in local-rank order into a float32 scratch, which rides IN its column check
//      (one round trip for check and data), then writes the result into every local buffer.
//   2b. otherwise (Horovod's layout): local rank l sums slice l of every local buffer in
//      local-rank order (reduce-scatter through shared memory), all-reduces that slice with
//      the l-th ranks of the other nodes (L concurrent cross-node exchanges; with 2 nodes one
//      MPI_Sendrecv each, summed node 0 + node 1; with more, dprun's ring), and writes the
//      finished slice into every local buffer (all-gather through shared memory, by the owner:
//      no extra barrier between the cross step and the copy).
//   3. barrier 2: every buffer is complete and no rank touches another's buffer after it.
// Summation order: ((b_{n,0} + b_{n,1}) + ...) per node in float32, then across nodes in a
// fixed order; avg multiplies once by 1/world at the end; 16-bit results are rounded once.
// Every element is reduced by one path and copied, so all ranks hold the same bits, run after
// run.
//
// Every other collective of the group passes check() (the same two stages, no data), so any
// two collectives pair through the same barriers and columns whatever they are.
//
// Hangs: the shared barriers time out (shm_timeout) and poison the node group; a dead peer in
// a cross-node MPI call leaves the caller's Work::wait() to its deadline, as the flat ring does.
#include <mpi.h>

#include <chrono>
#include <cstddef>
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

  // The desync check of a collective whose data MPI moves over the world communicator.
  void check(const Fingerprint& fp);
  // In place over `t`, which lies in `buf` (one of shm()'s buffers): see the top of the file.
  void allreduce(const ShmBuffer& buf, Tensor& t, bool average, const Fingerprint& fp);

 private:
  HierarchicalAllreduce() = default;
  // The column stage of the check: "" or the CollectiveError's message. `intra`: this node's
  // verdict (a mismatch perturbs the hash, see above). `payload`: a tiny all-reduce's node sum.
  std::string column_check(const Fingerprint& fp, const std::string& intra, Tensor* payload);
  void tiny(const ShmBuffer& buf, size_t offset, const Tensor& t, bool average,
            const Fingerprint& fp, const std::string& intra);
  void sliced(const ShmBuffer& buf, size_t offset, const Tensor& t, bool average,
              const Fingerprint& fp, const std::string& intra);
  // Slice [0, m) of this rank's column, summed over the nodes in node order, in place.
  void cross_allreduce(float* work, size_t m, const Fingerprint& fp);

  std::unique_ptr<ShmAllreduce> shm_;
  MPI_Comm cross_ = MPI_COMM_NULL;
  int world_ = 1;
  int node_index_ = 0;
  int nodes_ = 1;
  std::vector<int> cross_names_;  // world rank of each cross rank, for messages
  FusedCheck fused_;
  std::vector<float> scratch_;  // the 16-bit path's float32 slice; a tiny path's node sum
  std::vector<float> recv_;     // what the other node sent (2-node exchange) / ring scratch
};

}  // namespace dp
