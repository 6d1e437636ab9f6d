#pragma once
// The alpha-beta cost of one all-reduce of S bytes over n GPUs (or CPU ranks): alpha is
// the latency of one message (one step of an algorithm), beta = 1 / bandwidth. Used by the
// overlap simulator (runtime/perf/overlap_sim.h) to time each gradient bucket, by automatic
// bucket sizing and by `dprun predict`.
//
// The machine: `nodes` nodes of `gpus_per_node` GPUs; inside a node every GPU reaches every
// other at `intra` (bandwidth in NCCL's bus-bandwidth convention: a ring all-reduce of S
// bytes over g GPUs moves 2(g-1)/g S through each GPU's link); between nodes each node has
// `nics_per_node` links of `inter` (a DGX H100 has one 400 Gb/s NIC per GPU: 8).
//
// With n = nodes x g GPUs, N = nodes, L = nics_per_node, a node's egress B_node = L B_inter:
//   ring (flat, NCCL's rings): 2(n-1) steps, each as slow as its slowest hop:
//     T = 2(n-1) a_hop + 2(n-1)/n S / B_ring,  B_ring = min(B_intra, B_node) across nodes
//     (every ring crosses each node boundary; a node forwards 2(n-1)/n S over its L NICs;
//     with one GPU a node, g = 1, no intra-node link is crossed: B_ring = B_node),
//     a_hop = a_inter across nodes, a_intra in one node.
//   tree (NCCL's double binary tree between nodes, a chain inside each): reduce up, then
//     broadcast down, pipelined, so the bandwidth term does not grow with the depth:
//     T = 2 (ceil(log2 N) a_inter + (g-1) a_intra) + 2 S / B_ring
//   hierarchical (2D): reduce-scatter in the node, g parallel inter-node rings on the S/g
//     shards (sharing the node's L NICs), all-gather in the node; the phases run one after
//     the other, so their bandwidth terms add:
//     T = 2 (g-1) a_intra + 2 (g-1)/g S / B_intra + 2 (N-1) a_inter + 2 (N-1)/N S / B_node
// One GPU: T = 0. The three agree where they should (one node: hierarchical = ring; one GPU
// per node: hierarchical = ring across nodes).
#include <string>
#include <vector>

namespace dp {

// One kind of link: alpha (latency per message) and bandwidth.
struct Link {
  double alpha_us = 0;
  double bytes_per_us = 1;  // = MB/s; 1 GB/s = 1000 bytes/us
  static Link gbytes(double gb_per_s, double alpha_us) { return {alpha_us, gb_per_s * 1000.0}; }
  static Link gbits(double gbit_per_s, double alpha_us) { return {alpha_us, gbit_per_s * 125.0}; }
};

struct Cluster {
  std::string name;
  int gpus_per_node = 1;
  Link intra;             // GPU to GPU inside a node (bus bandwidth)
  Link inter;             // one NIC between nodes
  int nics_per_node = 1;  // links a node has to the others
};

// 8 x H100 per node over NVLink (~370 GB/s bus bandwidth, ~1 us a step), 8 x 400 Gb/s
// InfiniBand NICs per node (rail-optimised, ~5 us a hop). Assumptions, not measurements.
Cluster h100_nvlink_ib();
// `ranks_per_host` ranks per emulated host (netns), hosts joined by one link of the given
// rate and one-way latency; ranks of a host share memory (a fast intra link).
Cluster emulated_link(double gbit_per_s, double latency_us, int ranks_per_host = 1);

enum class AllReduceAlgo { ring, tree, hierarchical, best };
const char* algo_name(AllReduceAlgo a);
AllReduceAlgo parse_algo(const std::string& s);  // ring, tree, hierarchical, best

class AllReduceCostModel {
 public:
  // n GPUs of `cluster`, filling nodes in turn (the last node may be partly used).
  AllReduceCostModel(Cluster cluster, int gpus);

  int gpus() const { return n_; }
  int nodes() const { return nodes_; }
  int gpus_per_node() const { return g_; }

  double ring_us(double bytes) const;
  double tree_us(double bytes) const;
  double hierarchical_us(double bytes) const;
  // `algo`, or with best the cheapest of the three for this size (what NCCL's tuner picks
  // per call); `chosen` (optional) says which.
  double time_us(double bytes, AllReduceAlgo algo = AllReduceAlgo::best,
                 AllReduceAlgo* chosen = nullptr) const;

 private:
  // Across nodes, the ring's and the tree's bandwidth: the slower of the node's NICs and, with
  // several GPUs a node, the intra-node links the data also crosses.
  double across_nodes_bytes_per_us() const;

  Cluster c_;
  int n_;
  int g_;
  int nodes_;
};

// A measured all-reduce, t(S) = alpha_us + S * us_per_byte on one process group of a fixed
// size: what automatic bucket sizing uses (no extrapolation), and, turned into a ring's link,
// what `dprun predict` extrapolates from.
struct AllReduceFit {
  struct Sample {
    double bytes = 0;
    double us = 0;
  };
  int world = 1;
  double alpha_us = 0;
  double us_per_byte = 0;
  std::vector<Sample> samples;
  double time_us(double bytes) const { return world > 1 ? alpha_us + bytes * us_per_byte : 0; }
  // Least squares over the samples (at least two distinct sizes), with alpha >= 0 (else the
  // line through the origin) and a positive slope.
  static AllReduceFit least_squares(int world, std::vector<Sample> samples);
  // The link a ring all-reduce over `world` ranks would need to give this fit:
  // a = 2(n-1) alpha, b = 2(n-1)/n / B.
  Link as_ring_link() const;
};

}  // namespace dp
