#include "runtime/perf/allreduce_cost.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "runtime/core/error.h"

namespace dp {

Cluster h100_nvlink_ib() {
  Cluster c;
  c.name = "h100-nvlink-ib";
  c.gpus_per_node = 8;
  c.intra = Link::gbytes(370, 1.0);
  c.inter = Link::gbits(400, 5.0);
  c.nics_per_node = 8;
  return c;
}

Cluster emulated_link(double gbit_per_s, double latency_us, int ranks_per_host) {
  DP_CHECK(gbit_per_s > 0 && latency_us >= 0 && ranks_per_host >= 1,
           "emulated link: rate {} Gbit/s, latency {} us, {} rank(s) per host", gbit_per_s,
           latency_us, ranks_per_host);
  Cluster c;
  c.name = "emulated";
  c.gpus_per_node = ranks_per_host;
  // Ranks of one emulated host reduce through shared memory: a memcpy-speed link
  // (an assumption; it matters only with several ranks per host).
  c.intra = Link::gbytes(5, 2.0);
  c.inter = Link::gbits(gbit_per_s, latency_us);
  c.nics_per_node = 1;
  return c;
}

const char* algo_name(AllReduceAlgo a) {
  switch (a) {
    case AllReduceAlgo::ring:
      return "ring";
    case AllReduceAlgo::tree:
      return "tree";
    case AllReduceAlgo::hierarchical:
      return "hierarchical";
    case AllReduceAlgo::best:
      return "best";
  }
  return "?";
}

AllReduceAlgo parse_algo(const std::string& s) {
  for (AllReduceAlgo a :
       {AllReduceAlgo::ring, AllReduceAlgo::tree, AllReduceAlgo::hierarchical, AllReduceAlgo::best})
    if (s == algo_name(a)) return a;
  fail("unknown all-reduce algorithm '{}' (expected ring, tree, hierarchical or best)", s);
}

AllReduceCostModel::AllReduceCostModel(Cluster cluster, int gpus)
    : c_(std::move(cluster)), n_(gpus) {
  DP_CHECK(n_ >= 1, "the cost model needs at least one GPU (got {})", n_);
  DP_CHECK(c_.gpus_per_node >= 1 && c_.nics_per_node >= 1, "cluster '{}': {} GPUs, {} NICs a node",
           c_.name, c_.gpus_per_node, c_.nics_per_node);
  DP_CHECK(c_.intra.bytes_per_us > 0 && c_.inter.bytes_per_us > 0 && c_.intra.alpha_us >= 0 &&
               c_.inter.alpha_us >= 0,
           "cluster '{}': bandwidths must be positive and latencies not negative", c_.name);
  g_ = std::min(n_, c_.gpus_per_node);
  // In 64 bits: n + g - 1 overflows an int for n near INT_MAX.
  nodes_ = static_cast<int>((int64_t(n_) + g_ - 1) / g_);
}

namespace {

// What a node can push to the others: all its NICs.
double node_bytes_per_us(const Cluster& c) {
  return c.inter.bytes_per_us * c.nics_per_node;
}

}  // namespace

double AllReduceCostModel::across_nodes_bytes_per_us() const {
  // With one GPU a node no data crosses an intra-node link: it would cap the NICs for nothing
  // (the emulated preset's 5 GB/s shared memory under a 400 Gb/s link).
  const double node = node_bytes_per_us(c_);
  return g_ == 1 ? node : std::min(c_.intra.bytes_per_us, node);
}

double AllReduceCostModel::ring_us(double bytes) const {
  if (n_ == 1) return 0;
  const double n = n_;
  const bool across = nodes_ > 1;
  const double alpha = across ? c_.inter.alpha_us : c_.intra.alpha_us;
  const double bw = across ? across_nodes_bytes_per_us() : c_.intra.bytes_per_us;
  return 2 * (n - 1) * alpha + 2 * (n - 1) / n * bytes / bw;
}

double AllReduceCostModel::tree_us(double bytes) const {
  if (n_ == 1) return 0;
  const double depth = nodes_ > 1 ? std::ceil(std::log2(double(nodes_))) : 0;
  const double latency = 2 * (depth * c_.inter.alpha_us + (g_ - 1) * c_.intra.alpha_us);
  const double bw = nodes_ > 1 ? across_nodes_bytes_per_us() : c_.intra.bytes_per_us;
  return latency + 2 * bytes / bw;
}

double AllReduceCostModel::hierarchical_us(double bytes) const {
  if (n_ == 1) return 0;
  const double g = g_, N = nodes_;
  const double intra =
      2 * (g - 1) * c_.intra.alpha_us + 2 * (g - 1) / g * bytes / c_.intra.bytes_per_us;
  const double inter =
      nodes_ > 1 ? 2 * (N - 1) * c_.inter.alpha_us + 2 * (N - 1) / N * bytes / node_bytes_per_us(c_)
                 : 0;
  return intra + inter;
}

double AllReduceCostModel::time_us(double bytes, AllReduceAlgo algo, AllReduceAlgo* chosen) const {
  AllReduceAlgo pick = algo;
  double t = 0;
  switch (algo) {
    case AllReduceAlgo::ring:
      t = ring_us(bytes);
      break;
    case AllReduceAlgo::tree:
      t = tree_us(bytes);
      break;
    case AllReduceAlgo::hierarchical:
      t = hierarchical_us(bytes);
      break;
    case AllReduceAlgo::best: {
      pick = AllReduceAlgo::ring;
      t = ring_us(bytes);
      const double tree = tree_us(bytes), hier = hierarchical_us(bytes);
      if (tree < t) t = tree, pick = AllReduceAlgo::tree;
      if (hier < t) t = hier, pick = AllReduceAlgo::hierarchical;
      break;
    }
  }
  if (chosen) *chosen = pick;
  return t;
}

AllReduceFit AllReduceFit::least_squares(int world, std::vector<Sample> samples) {
  DP_CHECK(world >= 1, "all-reduce fit: world size {}", world);
  AllReduceFit f;
  f.world = world;
  f.samples = std::move(samples);
  const size_t m = f.samples.size();
  DP_CHECK(m >= 2, "all-reduce fit: {} sample(s), need two sizes at least", m);
  // Ordinary least squares: the large sizes, which carry the bandwidth, dominate; the
  // intercept is the latency.
  double sx = 0, sy = 0;
  for (const Sample& s : f.samples) {
    DP_CHECK(s.bytes >= 0 && s.us >= 0, "all-reduce fit: a sample of {} bytes in {} us", s.bytes,
             s.us);
    sx += s.bytes, sy += s.us;
  }
  const double mx = sx / double(m), my = sy / double(m);
  double sxx = 0, sxy = 0;
  for (const Sample& s : f.samples) {
    sxx += (s.bytes - mx) * (s.bytes - mx);
    sxy += (s.bytes - mx) * (s.us - my);
  }
  DP_CHECK(sxx > 0, "all-reduce fit: every sample has the same size");
  // A slope at or below zero (noise on a link too fast to see) would make big buckets free:
  // keep a floor of 1 us per GB (1 PB/s).
  constexpr double kMinSlope = 1e-9;
  f.us_per_byte = std::max(sxy / sxx, kMinSlope);
  f.alpha_us = my - f.us_per_byte * mx;
  if (f.alpha_us < 0) {
    // A negative latency (a link whose small transfers ride a burst allowance, tc's tbf)
    // would make many small buckets cheaper than one: through the origin instead, t = b S.
    double sxx0 = 0, sxy0 = 0;
    for (const Sample& s : f.samples) sxx0 += s.bytes * s.bytes, sxy0 += s.bytes * s.us;
    f.alpha_us = 0;
    f.us_per_byte = std::max(sxy0 / sxx0, kMinSlope);
  }
  return f;
}

Link AllReduceFit::as_ring_link() const {
  if (world <= 1) return Link{0, 1e12};
  const double n = world;
  return Link{alpha_us / (2 * (n - 1)), 2 * (n - 1) / n / us_per_byte};
}

}  // namespace dp
