#include <gtest/gtest.h>

#include <atomic>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "runtime/comm/flight_recorder.h"
#include "runtime/core/clock.h"
#include "runtime/core/error.h"

using namespace dp;

namespace {

WorkPtr make_work(uint64_t seq, const std::string& tag = "bucket 0") {
  return std::make_shared<Work>("allreduce(avg) float32[8] '" + tag + "'", seq);
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST(FlightRecorder, KeepsTheLast64OldestFirst) {
  FlightRecorder fr;
  for (uint64_t seq = 1; seq <= 100; ++seq) fr.record(make_work(seq));
  EXPECT_EQ(fr.recorded(), 100u);
  std::vector<FlightRecorder::Entry> entries = fr.snapshot();
  ASSERT_EQ(entries.size(), FlightRecorder::kCapacity);
  for (size_t i = 0; i < entries.size(); ++i) EXPECT_EQ(entries[i].seq, 37 + i);
}

TEST(FlightRecorder, FewerThanCapacityAreAllKept) {
  FlightRecorder fr;
  EXPECT_TRUE(fr.snapshot().empty());
  EXPECT_EQ(fr.summary(3, now_us()), "rank 3: no collective recorded");
  for (uint64_t seq = 1; seq <= 3; ++seq) fr.record(make_work(seq));
  std::vector<FlightRecorder::Entry> entries = fr.snapshot();
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries.front().seq, 1u);
  EXPECT_EQ(entries.back().seq, 3u);
}

TEST(FlightRecorder, EntriesFollowTheirWorksState) {
  FlightRecorder fr;
  WorkPtr done = make_work(1), failed = make_work(2), running = make_work(3), queued = make_work(4);
  for (const WorkPtr& w : {done, failed, running, queued}) fr.record(w);
  done->mark_started();
  done->mark_completed();
  failed->mark_started();
  failed->mark_completed(std::make_exception_ptr(Error("boom")));
  running->mark_started();
  std::vector<FlightRecorder::Entry> e = fr.snapshot();
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].status.state, WorkState::completed);
  EXPECT_EQ(e[1].status.state, WorkState::failed);
  EXPECT_EQ(e[2].status.state, WorkState::running);
  EXPECT_EQ(e[3].status.state, WorkState::queued);
  EXPECT_GT(e[2].status.start_us, 0);
  EXPECT_EQ(e[3].status.start_us, 0);
  EXPECT_GE(e[0].status.end_us, e[0].status.start_us);
}

TEST(FlightRecorder, SummaryNamesTheLastCompletedAndTheStuckOne) {
  FlightRecorder fr;
  WorkPtr a = make_work(5, "bucket 1"), b = make_work(6, "bucket 2"), c = make_work(7);
  for (const WorkPtr& w : {a, b, c}) fr.record(w);
  a->mark_started();
  a->mark_completed();
  b->mark_started();
  const double now = b->start_us() + 3.0e6;
  const std::string s = fr.summary(2, now);
  EXPECT_TRUE(contains(s, "rank 2: last completed #5 allreduce(avg) float32[8] 'bucket 1' at +"))
      << s;
  EXPECT_TRUE(contains(s, " ms; #6 running for 3.0 s")) << s;

  // Nothing completed: the first entry is where the rank is stuck.
  FlightRecorder none;
  WorkPtr q = make_work(1);
  none.record(q);
  const std::string t = none.summary(0, q->enqueue_us() + 1.5e6);
  EXPECT_EQ(t, "rank 0: no collective completed in the last 1; #1 queued for 1.5 s");
}

TEST(FlightRecorder, DumpHasOneLinePerEntryWithItsState) {
  FlightRecorder fr;
  WorkPtr a = make_work(1), b = make_work(2), c = make_work(3);
  for (const WorkPtr& w : {a, b, c}) fr.record(w);
  a->mark_started();
  a->mark_completed();
  b->mark_started();
  std::vector<std::string> lines = fr.dump_lines(1, now_us());
  ASSERT_EQ(lines.size(), 4u);  // a header, then oldest first
  const std::string prefix = "dprun: flight recorder [rank 1]: ";
  for (const std::string& l : lines) EXPECT_EQ(l.rfind(prefix, 0), 0u) << l;
  EXPECT_TRUE(contains(lines[0], "last 3 of 3 collectives, oldest first")) << lines[0];
  EXPECT_TRUE(contains(lines[1], "#1 completed allreduce(avg) float32[8] 'bucket 0': enqueued +"))
      << lines[1];
  EXPECT_TRUE(contains(lines[1], ", started +")) << lines[1];
  EXPECT_TRUE(contains(lines[1], ", ended +")) << lines[1];
  EXPECT_TRUE(contains(lines[2], "#2 running ")) << lines[2];
  EXPECT_TRUE(contains(lines[2], "running for ")) << lines[2];
  EXPECT_TRUE(contains(lines[3], "#3 queued ")) << lines[3];
  EXPECT_FALSE(contains(lines[3], "started")) << lines[3];
  EXPECT_TRUE(contains(lines[3], "queued for ")) << lines[3];
}

TEST(FlightRecorder, ConcurrentRecordAndDumpFromTwoThreads) {
  // The comm thread records and completes while the main thread reads, as on a timeout.
  FlightRecorder fr;
  std::atomic<bool> stop{false};
  std::thread comm([&] {
    for (uint64_t seq = 1; seq <= 5000; ++seq) {
      WorkPtr w = make_work(seq);
      fr.record(w);
      w->mark_started();
      w->mark_completed();
    }
    stop = true;
  });
  size_t reads = 0;
  while (!stop || reads == 0) {
    std::vector<FlightRecorder::Entry> e = fr.snapshot();
    ASSERT_LE(e.size(), FlightRecorder::kCapacity);
    for (size_t i = 1; i < e.size(); ++i) ASSERT_EQ(e[i].seq, e[i - 1].seq + 1);
    EXPECT_FALSE(fr.dump_lines(0, now_us()).empty());
    ++reads;
  }
  comm.join();
  std::vector<FlightRecorder::Entry> e = fr.snapshot();
  ASSERT_EQ(e.size(), FlightRecorder::kCapacity);
  EXPECT_EQ(e.back().seq, 5000u);
  EXPECT_TRUE(contains(fr.summary(0, now_us()), "last completed #5000 "))
      << fr.summary(0, now_us());
}

// A stuck rank is late, not waiting: it never reports itself. The ranks waiting for its
// message name it, as long as their communication thread is blocked on that receive.
TEST(FlightRecorder, SummaryNamesThePeerTheThreadWaitsFor) {
  FlightRecorder fr;
  WorkPtr w = make_work(1);
  fr.record(w);
  w->mark_started();
  EXPECT_FALSE(contains(fr.summary(0, now_us()), "waits for"));
  {
    WaitingFor waiting(&fr, 2, "desync check");
    EXPECT_EQ(fr.waiting_for(), 2);
    EXPECT_TRUE(contains(fr.summary(0, now_us()),
                         "its communication thread waits for rank 2's message (desync check)"))
        << fr.summary(0, now_us());
  }
  EXPECT_EQ(fr.waiting_for(), -1);
  EXPECT_FALSE(contains(fr.summary(0, now_us()), "waits for"));
  WaitingFor nothing(nullptr, 1, "no recorder");  // the ring without a recorder
}

// A shared-memory barrier waits for ranks to arrive, not for a message: the summary says
// which, and how many more; a message wait after it reads as a message again.
TEST(FlightRecorder, SummaryNamesTheRanksABarrierWaitsFor) {
  FlightRecorder fr;
  WorkPtr w = make_work(1);
  fr.record(w);
  w->mark_started();
  fr.set_waiting_at(1, 0, "barrier 1 of 2");
  EXPECT_EQ(fr.waiting_for(), 1);
  EXPECT_TRUE(contains(fr.summary(0, now_us()),
                       "its communication thread waits in shared memory for rank 1 to arrive at "
                       "barrier 1 of 2"))
      << fr.summary(0, now_us());
  fr.set_waiting_at(2, 3, "the check barrier");
  EXPECT_TRUE(contains(fr.summary(0, now_us()),
                       "waits in shared memory for rank 2 and 3 other ranks to arrive at the "
                       "check barrier"))
      << fr.summary(0, now_us());
  // A wait that ended in an error keeps its note until the next one.
  fr.set_gave_up();
  EXPECT_TRUE(contains(fr.summary(0, now_us()),
                       "its communication thread gave up waiting in shared memory for rank 2 and "
                       "3 other ranks to arrive at the check barrier"))
      << fr.summary(0, now_us());
  fr.set_waiting_for(3, "desync check");
  EXPECT_TRUE(contains(fr.summary(0, now_us()), "waits for rank 3's message (desync check)"))
      << fr.summary(0, now_us());
  fr.set_waiting_for(-1, "");
  EXPECT_FALSE(contains(fr.summary(0, now_us()), "waits"));
}
