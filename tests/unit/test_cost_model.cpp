// The all-reduce cost model's arithmetic (runtime/perf/allreduce_cost.h), against figures
// worked out by hand from the equations in its header.
#include <gtest/gtest.h>

#include <algorithm>

#include "runtime/core/error.h"
#include "runtime/perf/allreduce_calibration.h"
#include "runtime/perf/allreduce_cost.h"
#include "runtime/perf/allreduce_probe.h"

using namespace dp;

namespace {

// 2 GPUs a node at 1000 bytes/us (1 us a step); one 100 bytes/us NIC a node (10 us a hop).
Cluster small_cluster() {
  Cluster c;
  c.name = "test";
  c.gpus_per_node = 2;
  c.intra = Link{1.0, 1000.0};
  c.inter = Link{10.0, 100.0};
  c.nics_per_node = 1;
  return c;
}

}  // namespace

TEST(AllReduceCost, OneGpuCostsNothing) {
  AllReduceCostModel m(small_cluster(), 1);
  EXPECT_EQ(m.ring_us(1e6), 0);
  EXPECT_EQ(m.tree_us(1e6), 0);
  EXPECT_EQ(m.hierarchical_us(1e6), 0);
  EXPECT_EQ(m.time_us(1e6), 0);
}

TEST(AllReduceCost, RingInsideOneNode) {
  Cluster c = small_cluster();
  c.gpus_per_node = 8;
  c.intra = Link{1.0, 100.0};
  AllReduceCostModel m(c, 4);
  EXPECT_EQ(m.nodes(), 1);
  // 2 (n-1) alpha + 2 (n-1)/n S / B = 6 + 1.5 * 1000 / 100.
  EXPECT_DOUBLE_EQ(m.ring_us(1000), 21.0);
  // One node: hierarchical is the ring; the tree is a chain, 2 (g-1) alpha + 2 S / B.
  EXPECT_DOUBLE_EQ(m.hierarchical_us(1000), 21.0);
  EXPECT_DOUBLE_EQ(m.tree_us(1000), 6.0 + 20.0);
  AllReduceAlgo chosen = AllReduceAlgo::best;
  EXPECT_DOUBLE_EQ(m.time_us(1000, AllReduceAlgo::best, &chosen), 21.0);
  EXPECT_EQ(chosen, AllReduceAlgo::ring);
}

TEST(AllReduceCost, AcrossNodes) {
  AllReduceCostModel m(small_cluster(), 8);  // 4 nodes of 2
  EXPECT_EQ(m.nodes(), 4);
  EXPECT_EQ(m.gpus_per_node(), 2);
  const double S = 8000;
  // ring: 2 * 7 * 10 + 2 * 7/8 * 8000 / min(1000, 100) = 140 + 140.
  EXPECT_DOUBLE_EQ(m.ring_us(S), 280.0);
  // tree: 2 (ceil(log2 4) * 10 + (2-1) * 1) + 2 * 8000 / 100 = 42 + 160.
  EXPECT_DOUBLE_EQ(m.tree_us(S), 202.0);
  // hierarchical: 2*1*1 + 2*(1/2)*8000/1000 + 2*3*10 + 2*(3/4)*8000/100 = 2 + 8 + 60 + 120.
  EXPECT_DOUBLE_EQ(m.hierarchical_us(S), 190.0);
  AllReduceAlgo chosen = AllReduceAlgo::best;
  EXPECT_DOUBLE_EQ(m.time_us(S, AllReduceAlgo::best, &chosen), 190.0);
  EXPECT_EQ(chosen, AllReduceAlgo::hierarchical);
  EXPECT_DOUBLE_EQ(m.time_us(S, AllReduceAlgo::tree), 202.0);
  // Small messages: latency decides, the tree's log depth wins.
  EXPECT_DOUBLE_EQ(m.time_us(8, AllReduceAlgo::best, &chosen), 42.0 + 0.16);
  EXPECT_EQ(chosen, AllReduceAlgo::tree);
}

TEST(AllReduceCost, MoreNicsRaiseTheNodeBandwidth) {
  Cluster c = small_cluster();
  c.nics_per_node = 2;  // 200 bytes/us out of every node
  AllReduceCostModel m(c, 8);
  EXPECT_DOUBLE_EQ(m.ring_us(8000), 140.0 + 70.0);
  EXPECT_DOUBLE_EQ(m.hierarchical_us(8000), 2 + 8 + 60 + 60.0);
}

TEST(AllReduceCost, APartlyFilledLastNode) {
  AllReduceCostModel m(small_cluster(), 5);  // nodes of 2, 2, 1
  EXPECT_EQ(m.nodes(), 3);
  // tree depth ceil(log2 3) = 2.
  EXPECT_DOUBLE_EQ(m.tree_us(0), 2 * (2 * 10.0 + 1 * 1.0));
}

TEST(AllReduceCost, H100PresetInOneNode) {
  AllReduceCostModel m(h100_nvlink_ib(), 8);
  // 1 GB at 370 GB/s bus bandwidth: 2 * 7 * 1 us + 2 * 7/8 * 1e9 / 370e3 us.
  EXPECT_NEAR(m.ring_us(1e9), 14.0 + 1.75e9 / 370e3, 1e-6);
  // Across 2 nodes the NICs (8 x 50 GB/s = 400 GB/s) do not bind: the ring stays at NVLink's.
  AllReduceCostModel two(h100_nvlink_ib(), 16);
  EXPECT_NEAR(two.ring_us(1e9), 2 * 15 * 5.0 + 2 * 15.0 / 16 * 1e9 / 370e3, 1e-6);
}

TEST(AllReduceCost, EmulatedLinkIsTheRingOverItsRate) {
  AllReduceCostModel m(emulated_link(2.0, 50.0), 2);  // 2 Gbit/s = 250 bytes/us
  EXPECT_DOUBLE_EQ(m.ring_us(1e6), 2 * 50.0 + 1e6 / 250.0);
  EXPECT_DOUBLE_EQ(m.time_us(1e6), 2 * 50.0 + 1e6 / 250.0);
}

TEST(AllReduceCost, OneGpuANodeCrossesNoIntraNodeLink) {
  // The emulated preset's 5 GB/s shared memory under a 400 Gb/s (50 GB/s) link: with one rank a
  // host no data goes through it, and the ring is the hierarchical all-reduce (as the header
  // says), both at the link's rate.
  const Cluster c = emulated_link(400.0, 5.0, 1);
  AllReduceCostModel m(c, 16);
  ASSERT_EQ(m.nodes(), 16);
  const double S = 1e8;
  EXPECT_DOUBLE_EQ(m.ring_us(S), m.hierarchical_us(S));
  EXPECT_DOUBLE_EQ(m.ring_us(S), 2 * 15 * 5.0 + 2 * 15.0 / 16 * S / 50000.0);
  // The tree too: 2 ceil(log2 16) a + 2 S / B_node.
  EXPECT_DOUBLE_EQ(m.tree_us(S), 2 * 4 * 5.0 + 2 * S / 50000.0);
  // With two ranks a host the shared memory is crossed, and binds.
  AllReduceCostModel two(emulated_link(400.0, 5.0, 2), 16);
  EXPECT_DOUBLE_EQ(two.ring_us(S), 2 * 15 * 5.0 + 2 * 15.0 / 16 * S / 5000.0);
}

TEST(AllReduceCost, GpuCountsNearIntMaxDoNotOverflowTheNodes) {
  AllReduceCostModel m(small_cluster(), 2147483647);
  EXPECT_EQ(m.nodes(), 1073741824);
  EXPECT_GT(m.time_us(1e6), 0);
}

TEST(AllReduceCost, RejectsNonsense) {
  EXPECT_THROW(AllReduceCostModel(small_cluster(), 0), Error);
  Cluster c = small_cluster();
  c.inter.bytes_per_us = 0;
  EXPECT_THROW(AllReduceCostModel(c, 4), Error);
  EXPECT_THROW(parse_algo("butterfly"), Error);
  EXPECT_EQ(parse_algo("tree"), AllReduceAlgo::tree);
}

TEST(AllReduceFit, ExactLine) {
  AllReduceFit f = AllReduceFit::least_squares(2, {{1000, 15}, {2000, 25}, {4000, 45}});
  EXPECT_NEAR(f.alpha_us, 5.0, 1e-9);
  EXPECT_NEAR(f.us_per_byte, 0.01, 1e-12);
  EXPECT_NEAR(f.time_us(3000), 35.0, 1e-9);
  // One rank: nothing to reduce.
  EXPECT_EQ(AllReduceFit::least_squares(1, {{1000, 15}, {2000, 25}}).time_us(1e6), 0);
}

TEST(AllReduceFit, NegativeLatencyGoesThroughTheOrigin) {
  // A burst allowance makes the small size nearly free: the line would cross below zero.
  AllReduceFit f = AllReduceFit::least_squares(2, {{1e5, 1}, {1e6, 1000}, {2e6, 2000}});
  EXPECT_EQ(f.alpha_us, 0);
  // sum(x y) / sum(x^2) = (1e5 + 1e9 + 4e9) / (1e10 + 1e12 + 4e12).
  EXPECT_NEAR(f.us_per_byte, (1e5 + 5e9) / 5.01e12, 1e-15);
}

TEST(AllReduceFit, NeedsTwoSizes) {
  EXPECT_THROW(AllReduceFit::least_squares(2, {{1000, 15}}), Error);
  EXPECT_THROW(AllReduceFit::least_squares(2, {{1000, 15}, {1000, 16}}), Error);
}

TEST(AllReduceFit, AsTheLinkOfARing) {
  AllReduceFit f;
  f.world = 4;
  f.alpha_us = 30;
  f.us_per_byte = 0.0015;
  // a = 2(n-1) alpha -> alpha = 30 / 6; b = 2(n-1)/n / B -> B = 1.5 / 0.0015.
  const Link l = f.as_ring_link();
  EXPECT_DOUBLE_EQ(l.alpha_us, 5.0);
  EXPECT_DOUBLE_EQ(l.bytes_per_us, 1000.0);
  // And that link's ring over 4 GPUs is the fit again.
  Cluster c;
  c.gpus_per_node = 1;
  c.inter = l;
  c.intra = l;
  EXPECT_NEAR(AllReduceCostModel(c, 4).ring_us(1e6), f.time_us(1e6), 1e-6);
}

namespace {

AllReduceFit idle_fit() {  // 10 us + 1 ns a byte
  AllReduceFit f;
  f.world = 2;
  f.alpha_us = 10;
  f.us_per_byte = 0.001;
  return f;
}

// An all-reduce of `bytes` from `start` to `end`, in a step whose backward ended at `bwd`.
BucketTiming span(double bytes, double start, double end, double bwd = 1e12) {
  return {bytes, start, end, bwd};
}

}  // namespace

TEST(AllReduceCalibration, TwoSizesInsideBackwardAreFitted) {
  // Medians per size: 1e4 -> 500 us, 4e6 -> 8500 us (the 9e9 is an outlier).
  AllReduceFit f = calibrate_busy({span(1e4, 0, 400), span(1e4, 100, 600), span(1e4, 0, 600),
                                   span(4e6, 0, 8000), span(4e6, 0, 8500), span(4e6, 0, 9e9)},
                                  idle_fit());
  EXPECT_NEAR(f.us_per_byte, 8000.0 / (4e6 - 1e4), 1e-12);
  EXPECT_NEAR(f.time_us(1e4), 500, 1e-6);
  EXPECT_NEAR(f.time_us(4e6), 8500, 1e-6);
}

TEST(AllReduceCalibration, NoFasterThanTheLinkAlone) {
  // 1e4 B inside backward: 6000 us; 1e7 B: 6010 us, as if 1 ns/B were free during backward.
  // The idle line's 1 ns/B stays; the latency takes the rest: mean(6000 - 10, 6010 - 10000).
  AllReduceFit f = calibrate_busy({span(1e4, 0, 6000), span(1e7, 0, 6010)}, idle_fit());
  EXPECT_DOUBLE_EQ(f.us_per_byte, 0.001);
  EXPECT_DOUBLE_EQ(f.alpha_us, std::max(10.0, (5990.0 - 3990.0) / 2));
}

TEST(AllReduceCalibration, ABucketRunningPastBackwardCountsItsShareInside) {
  // 1 MB: 1010 us alone. It ran 3000 us inside backward and 505 us after, half its work at
  // the idle rate: inside, the whole would take 3000 / (1 - 0.5) = 6000 us. One size: the
  // link's bandwidth stays, the latency takes the rest (6000 - 1000 us).
  AllReduceFit f = calibrate_busy({span(1e6, 0, 3505, 3000)}, idle_fit());
  EXPECT_NEAR(f.alpha_us, 5000, 1e-6);
  EXPECT_DOUBLE_EQ(f.us_per_byte, 0.001);
  EXPECT_NEAR(f.time_us(1e6), 6000, 1e-6);
}

TEST(AllReduceCalibration, OneSmallBucketsSlowdownIsNotExtrapolatedToEveryByte) {
  // A 40 KB first bucket that waited 8 ms for the CPU inside backward (50 us alone): a 4 MB
  // bucket then costs about 8 ms more than alone, not 200x the link's time.
  AllReduceFit f = calibrate_busy({span(4e4, 0, 8000)}, idle_fit());
  EXPECT_DOUBLE_EQ(f.us_per_byte, 0.001);
  EXPECT_NEAR(f.time_us(4e4), 8000, 1e-6);
  EXPECT_NEAR(f.time_us(4e6), 8000 - 40 + 4000, 1e-6);
}

TEST(AllReduceCalibration, WhatSaysNothingAboutBackwardIsIgnored) {
  const AllReduceFit idle = idle_fit();
  // Started after backward; ran mostly after it (the few us inside are noise); or ran less
  // than a quarter of its time inside.
  AllReduceFit f = calibrate_busy(
      {span(1e6, 3000, 4010, 2000), span(1e6, 0, 1000, 5), span(1e6, 0, 1050, 250)}, idle);
  EXPECT_EQ(f.alpha_us, idle.alpha_us);
  EXPECT_EQ(f.us_per_byte, idle.us_per_byte);
  // Faster inside backward than alone: never below the idle line.
  f = calibrate_busy({span(1e6, 0, 500)}, idle);
  EXPECT_EQ(f.us_per_byte, idle.us_per_byte);
  // One rank: nothing to calibrate.
  AllReduceFit one = idle;
  one.world = 1;
  EXPECT_EQ(calibrate_busy({span(1e6, 0, 9000)}, one).time_us(1e6), 0);
}

TEST(AllReduceProbe, DefaultSizesSpanTheBuckets) {
  EXPECT_EQ(default_probe_sizes(100u << 20), (std::vector<size_t>{64u << 10, 1u << 20, 8u << 20}));
  EXPECT_EQ(default_probe_sizes(2u << 20), (std::vector<size_t>{64u << 10, 1u << 20, 2u << 20}));
  EXPECT_EQ(default_probe_sizes(1u << 20), (std::vector<size_t>{64u << 10, 1u << 20}));
  EXPECT_EQ(default_probe_sizes(4000), (std::vector<size_t>{4000, 64u << 10, 1u << 20}));
}
