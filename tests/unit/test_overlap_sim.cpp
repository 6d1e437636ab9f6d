// The overlap simulator (runtime/perf/overlap_sim.h) on schedules worked out by hand.
#include <gtest/gtest.h>

#include "runtime/core/error.h"
#include "runtime/perf/overlap_sim.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;

namespace {

// Three parameters in registration order; backward writes p2 first (at 10 us), then p1 (50),
// then p0 (90); backward lasts 100 us, 20 before it, 5 after.
BackwardProfile three_layers() {
  BackwardProfile p;
  p.params = {{"p0", 100, 90}, {"p1", 200, 50}, {"p2", 300, 10}};
  p.pre_backward_us = 20;
  p.backward_us = 100;
  p.post_backward_us = 5;
  return p;
}

// 10 us + 0.1 us a byte.
const AllReduceCost kCost = [](double bytes) { return 10 + bytes / 10; };

}  // namespace

TEST(OverlapSim, OneBucketPerLayerHidesAllButTheLast) {
  StepPrediction p = simulate_step(three_layers(), {{2}, {1}, {0}}, kCost);
  ASSERT_EQ(p.buckets.size(), 3u);
  // p2: ready 10, runs 10..50; p1: ready 50, runs 50..80; p0: ready 90, runs 90..110.
  EXPECT_DOUBLE_EQ(p.buckets[0].start_us, 10);
  EXPECT_DOUBLE_EQ(p.buckets[0].end_us, 50);
  EXPECT_DOUBLE_EQ(p.buckets[1].start_us, 50);
  EXPECT_DOUBLE_EQ(p.buckets[1].end_us, 80);
  EXPECT_DOUBLE_EQ(p.buckets[2].start_us, 90);
  EXPECT_DOUBLE_EQ(p.buckets[2].end_us, 110);
  EXPECT_DOUBLE_EQ(p.comm_us, 90);
  EXPECT_DOUBLE_EQ(p.exposed_us, 10);
  EXPECT_DOUBLE_EQ(p.step_us, 20 + 100 + 10 + 5);
  EXPECT_DOUBLE_EQ(p.hidden(), 1 - 10.0 / 90);
}

TEST(OverlapSim, OneBigBucketWaitsForTheLastGradient) {
  StepPrediction p = simulate_step(three_layers(), {{2, 1, 0}}, kCost);
  // Ready at 90, 10 + 60 us: ends at 160.
  EXPECT_DOUBLE_EQ(p.buckets[0].bytes, 600);
  EXPECT_DOUBLE_EQ(p.comm_us, 70);
  EXPECT_DOUBLE_EQ(p.exposed_us, 60);
  EXPECT_DOUBLE_EQ(p.step_us, 185);
}

TEST(OverlapSim, BucketsQueueOnOneCommunicationThread) {
  // Everything ready at once (no overlap): 100..140, 140..170, 170..190.
  SimOptions o;
  o.overlap = false;
  StepPrediction p = simulate_step(three_layers(), {{2}, {1}, {0}}, kCost, o);
  EXPECT_DOUBLE_EQ(p.buckets[1].start_us, 140);
  EXPECT_DOUBLE_EQ(p.buckets[2].end_us, 190);
  EXPECT_DOUBLE_EQ(p.exposed_us, 90);
  EXPECT_DOUBLE_EQ(p.exposed_us, p.comm_us);
  EXPECT_DOUBLE_EQ(p.step_us, 20 + 100 + 90 + 5);
}

TEST(OverlapSim, BucketsLaunchStrictlyInOrder) {
  // Bucket 1 (p2, p1) is complete at 50 but bucket 0 (p0) only at 90: bucket 1 waits for
  // bucket 0's launch at 90 and then for its all-reduce (90..110): 110..170.
  StepPrediction p = simulate_step(three_layers(), {{0}, {2, 1}}, kCost);
  EXPECT_DOUBLE_EQ(p.buckets[1].ready_us, 50);
  EXPECT_DOUBLE_EQ(p.buckets[1].start_us, 110);
  EXPECT_DOUBLE_EQ(p.buckets[1].end_us, 170);
  EXPECT_DOUBLE_EQ(p.exposed_us, 70);
  EXPECT_DOUBLE_EQ(p.step_us, 195);
}

TEST(OverlapSim, WireRatioHalvesTheBytesOnTheWire) {
  SimOptions o;
  o.wire_ratio = 0.5;
  StepPrediction p = simulate_step(three_layers(), {{2}, {1}, {0}}, kCost, o);
  // 10 + 15, 10 + 10, 10 + 5: the last runs 90..105.
  EXPECT_DOUBLE_EQ(p.buckets[2].end_us, 105);
  EXPECT_DOUBLE_EQ(p.exposed_us, 5);
  EXPECT_EQ(p.buckets[0].bytes, 300u);  // gradient bytes, not wire bytes
}

TEST(OverlapSim, AllReducesRunSlowerWhileBackwardComputes) {
  // Three times slower during backward. p2's bucket: 120 us busy from 10, 90 us done by 100
  // (3/4 of it), the last quarter of 40 us alone: ends 110. Then 110..140 and 140..160.
  SimOptions o;
  o.busy_cost = [](double bytes) { return 3 * kCost(bytes); };
  StepPrediction p = simulate_step(three_layers(), {{2}, {1}, {0}}, kCost, o);
  EXPECT_DOUBLE_EQ(p.buckets[0].end_us, 110);
  EXPECT_DOUBLE_EQ(p.buckets[1].start_us, 110);
  EXPECT_DOUBLE_EQ(p.buckets[2].end_us, 160);
  EXPECT_DOUBLE_EQ(p.exposed_us, 10 + 30 + 20);
  EXPECT_DOUBLE_EQ(p.step_us, 20 + 100 + 60 + 5);
  // Twice slower: p2's 80 us end at 90, inside; p1's (60 busy) from 90: 1/6 done by 100, the
  // rest of 30 alone by 125; p0's 20 from 125.
  o.busy_cost = [](double bytes) { return 2 * kCost(bytes); };
  p = simulate_step(three_layers(), {{2}, {1}, {0}}, kCost, o);
  EXPECT_DOUBLE_EQ(p.buckets[0].end_us, 90);
  EXPECT_DOUBLE_EQ(p.buckets[1].end_us, 125);
  EXPECT_DOUBLE_EQ(p.buckets[2].end_us, 145);
  EXPECT_DOUBLE_EQ(p.exposed_us, 45);
}

TEST(OverlapSim, FreeCommunicationCostsNothing) {
  StepPrediction p = simulate_step(three_layers(), {{2}, {1}, {0}}, [](double) { return 0.0; });
  EXPECT_DOUBLE_EQ(p.exposed_us, 0);
  EXPECT_DOUBLE_EQ(p.step_us, three_layers().compute_us());
  EXPECT_DOUBLE_EQ(p.hidden(), 1.0);
}

TEST(OverlapSim, ASlowerPeerDelaysABucketPastBackward) {
  // The slowest rank writes p0 20 us after this rank's backward ended: its all-reduce runs
  // 120..140, and this rank waits from 100 (its thread sits in the collective meanwhile).
  BackwardProfile prof = three_layers();
  prof.params[0].ready_us = 120;
  StepPrediction p = simulate_step(prof, {{2}, {1}, {0}}, kCost);
  EXPECT_DOUBLE_EQ(p.buckets[2].start_us, 120);
  EXPECT_DOUBLE_EQ(p.buckets[2].end_us, 140);
  EXPECT_DOUBLE_EQ(p.exposed_us, 40);
  EXPECT_DOUBLE_EQ(p.comm_us, 90);
  EXPECT_DOUBLE_EQ(p.step_us, 20 + 100 + 40 + 5);
}

TEST(OverlapSim, ATokenBucketSendsTheFirstBytesAfterAnIdleGapAtOnce) {
  // One bucket of 600 bytes, ready at 90. The link idled since the previous step's
  // all-reduce ended (the 5 us after backward and the 20 before it) and through backward
  // until 90: 115 us at 2 bytes/us, 230 bytes of credit under a 250-byte burst.
  SimOptions o;
  o.burst_bytes = 250;
  o.refill_bytes_per_us = 2;
  StepPrediction p = simulate_step(three_layers(), {{2, 1, 0}}, kCost, o);
  EXPECT_DOUBLE_EQ(p.buckets[0].end_us, 90 + 10 + (600 - 230) / 10.0);
  EXPECT_DOUBLE_EQ(p.exposed_us, 37);
  EXPECT_DOUBLE_EQ(p.step_us, 20 + 100 + 37 + 5);
  // The bucket holds no more than the burst.
  o.burst_bytes = 100;
  p = simulate_step(three_layers(), {{2, 1, 0}}, kCost, o);
  EXPECT_DOUBLE_EQ(p.buckets[0].end_us, 90 + 10 + 50);
  EXPECT_DOUBLE_EQ(p.exposed_us, 50);
  // No refill, no credit.
  o.refill_bytes_per_us = 0;
  EXPECT_DOUBLE_EQ(simulate_step(three_layers(), {{2, 1, 0}}, kCost, o).exposed_us, 60);
}

TEST(OverlapSim, TheCreditRefillsOnlyWhileTheLinkIdles) {
  SimOptions o;
  o.burst_bytes = 250;
  o.refill_bytes_per_us = 2;
  StepPrediction p = simulate_step(three_layers(), {{2}, {1}, {0}}, kCost, o);
  // p2 at 10: 70 bytes of credit (35 us idle), 230 sent: 10..43. p1 at 50: 7 us idle, 14
  // bytes: 50..78.6. p0 at 90: 11.4 us idle, 22.8 bytes: 90..107.72.
  EXPECT_DOUBLE_EQ(p.buckets[0].end_us, 43);
  EXPECT_NEAR(p.buckets[1].end_us, 78.6, 1e-9);
  EXPECT_NEAR(p.buckets[2].end_us, 107.72, 1e-9);
  EXPECT_NEAR(p.comm_us, 33 + 28.6 + 17.72, 1e-9);
  EXPECT_NEAR(p.exposed_us, 7.72, 1e-9);
}

TEST(OverlapSim, WhenAllIsHiddenTheLinkIdledSinceThePreviousStepsLastAllReduce) {
  // 1 us per 100 bytes, 1 byte/us of refill. The steady state's previous step ended its last
  // all-reduce before its backward did: the first bucket's credit counts that gap too.
  const AllReduceCost fast = [](double bytes) { return bytes / 100; };
  SimOptions o;
  o.burst_bytes = 1000;
  o.refill_bytes_per_us = 1;
  StepPrediction p = simulate_step(three_layers(), {{2}, {1}, {0}}, fast, o);
  EXPECT_DOUBLE_EQ(p.exposed_us, 0);
  // Without that gap (25 us idle before backward): p2 ends at 10 + (300 - 35) / 100, p1 at
  // 50 + (200 - (50 - 12.65)) / 100, p0 at 90 + (100 - (90 - 51.6265)) / 100.
  const double last_end = 90 + (100 - (90 - 51.6265)) / 100;
  const double gap = 25 + 100 - last_end;
  EXPECT_NEAR(p.buckets[0].end_us, 10 + (300 - (10 + gap)) / 100, 1e-9);
}

TEST(OverlapSim, LinkBurstPerHostBecomesAllReduceBytes) {
  SimOptions o;
  set_link_burst(o, 3000, 2, kCost);  // two hosts: each link carries every byte once
  EXPECT_DOUBLE_EQ(o.burst_bytes, 3000);
  EXPECT_NEAR(o.refill_bytes_per_us, 10, 1e-9);  // kCost's 0.1 us a byte
  set_link_burst(o, 3000, 4, kCost);             // four: 2 x 3/4 of the bytes on each link
  EXPECT_DOUBLE_EQ(o.burst_bytes, 2000);
  set_link_burst(o, 3000, 1, kCost);  // one host: no link
  EXPECT_DOUBLE_EQ(o.burst_bytes, 0);
  EXPECT_DOUBLE_EQ(o.refill_bytes_per_us, 0);
}

TEST(OverlapSim, RejectsABadAssignment) {
  EXPECT_THROW(simulate_step(three_layers(), {{2}, {}}, kCost), Error);
  EXPECT_THROW(simulate_step(three_layers(), {{7}}, kCost), Error);
}

TEST(BackwardProfile, ReadyOrderAndBytes) {
  BackwardProfile p = three_layers();
  EXPECT_EQ(p.ready_order(), (std::vector<size_t>{2, 1, 0}));
  EXPECT_EQ(p.grad_bytes(), 600u);
  EXPECT_DOUBLE_EQ(p.compute_us(), 125);
  p.params[0].ready_us = p.params[1].ready_us;  // a tie: the later-registered first
  EXPECT_EQ(p.ready_order(), (std::vector<size_t>{2, 1, 0}));
  EXPECT_NO_THROW(p.validate());
  p.params[1].ready_us = -1;
  EXPECT_THROW(p.validate(), Error);
  p.params[1].ready_us = 1e9;  // after backward: a slower peer
  EXPECT_NO_THROW(p.validate());
  p.params[1].ready_us = 50;
  p.backward_us = -1;
  EXPECT_THROW(p.validate(), Error);
  p.backward_us = 100;
  // Byte counts that would wrap grad_bytes() (2^63 twice is 0) are refused by name.
  p.params[0].bytes = p.params[1].bytes = size_t(1) << 63;
  EXPECT_MENTIONS(error_of([&] { p.validate(); }),
                  "the gradients add up to more than 2^50 bytes at parameter");
  p.params[0].bytes = p.params[1].bytes = (size_t(1) << 49) - 200;  // 2^50 - 400 + 200: fits
  EXPECT_NO_THROW(p.validate());
}
