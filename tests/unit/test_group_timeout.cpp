// Every Work a process group hands out has a finite deadline (the group's timeout), and a
// timeout on any of them writes the group's flight recorder to stderr once, whichever path
// timed out (DESIGN.md, "Desync and hangs").
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "runtime/comm/process_group.h"
#include "runtime/core/error.h"

using namespace dp;
using namespace std::chrono_literals;

namespace {

// A group whose collectives never complete: only its Works and recorder matter here.
class StuckGroup : public ProcessGroup {
 public:
  explicit StuckGroup(std::chrono::milliseconds timeout, int size = 4)
      : ProcessGroup(timeout), size_(size) {}
  int rank() const override { return size_ - 1; }
  int size() const override { return size_; }
  std::string backend() const override { return "stuck"; }
  WorkPtr allreduce(Tensor&, ReduceOp, const std::string& tag) override { return issue(tag); }
  WorkPtr broadcast(Tensor&, int, const std::string& tag) override { return issue(tag); }
  WorkPtr allgather(const Tensor&, Tensor&, const std::string& tag) override { return issue(tag); }
  WorkPtr barrier(const std::string& tag,
                  std::chrono::milliseconds = std::chrono::milliseconds(0)) override {
    return issue(tag);
  }

 private:
  WorkPtr issue(const std::string& tag) {
    WorkPtr w = make_work("collective '" + tag + "'", ++seq_);
    flight_recorder().record(w);
    return w;
  }
  uint64_t seq_ = 0;
  int size_;
};

size_t count(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t p = s.find(part); p != std::string::npos; p = s.find(part, p + 1)) ++n;
  return n;
}

}  // namespace

TEST(GroupTimeout, AGroupNeedsAFiniteTimeout) {
  EXPECT_THROW(StuckGroup(0ms), Error);
  EXPECT_EQ(StuckGroup(1500ms).timeout(), 1500ms);
}

TEST(GroupTimeout, WaitWithoutDeadlineUsesTheGroupsTimeout) {
  StuckGroup pg(30ms);
  WorkPtr w = pg.barrier("start");
  EXPECT_EQ(w->timeout(), 30ms);
  testing::internal::CaptureStderr();
  try {
    w->wait();
    FAIL() << "a barrier that never completes returned";
  } catch (const CollectiveTimeout& e) {
    EXPECT_NE(std::string(e.what()).find("within 0.03 s"), std::string::npos) << e.what();
  }
  testing::internal::GetCapturedStderr();
}

TEST(GroupTimeout, EveryPathDumpsTheRecorderOnceAndNamesItInEachError) {
  StuckGroup pg(5min);
  Tensor t = Tensor::zeros({4});
  WorkPtr loss = pg.allreduce(t, ReduceOp::avg, "step loss");
  WorkPtr totals = pg.allreduce(t, ReduceOp::sum, "eval totals");
  WorkPtr sync = pg.broadcast(t, 0, "buffers");
  testing::internal::CaptureStderr();
  std::string errors;
  for (const WorkPtr& w : {loss, totals, sync}) {
    try {
      w->wait(10ms);
      ADD_FAILURE() << "no timeout";
    } catch (const CollectiveTimeout& e) {
      errors += std::string(e.what()) + "\n";
    }
  }
  const std::string err = testing::internal::GetCapturedStderr();
  // One dump, holding all three, though three waits timed out.
  EXPECT_EQ(count(err, "dprun: flight recorder [rank 3]: last 3 of 3 collectives"), 1u) << err;
  EXPECT_EQ(count(err, "'eval totals'"), 1u) << err;
  // Every error carries the summary: where this rank is stuck.
  EXPECT_EQ(count(errors, "rank 3: no collective completed in the last 3; #1 queued for"), 3u)
      << errors;
}

TEST(GroupTimeout, AWorkThatOutlivesItsGroupStillTimesOutCleanly) {
  WorkPtr w;
  {
    StuckGroup pg(5min);
    w = pg.barrier("late");
  }
  EXPECT_THROW(w->wait(5ms), CollectiveTimeout);  // no recorder left to dump: no crash
}

// One rank waits for no one: a collective that completes after its group's short deadline (the
// communication thread waited for a core) is not a hang there, as it is among 4 ranks.
TEST(GroupTimeout, OneRankOutwaitsAShortTimeout) {
  for (int size : {1, 4}) {
    StuckGroup pg(5ms, size);
    WorkPtr w = pg.barrier("start");
    std::thread late([w] {
      std::this_thread::sleep_for(200ms);
      w->mark_started();
      w->mark_completed();
    });
    testing::internal::CaptureStderr();
    bool timed_out = false;
    try {
      w->wait();
    } catch (const CollectiveTimeout&) {
      timed_out = true;
    }
    late.join();
    testing::internal::GetCapturedStderr();
    EXPECT_EQ(timed_out, size > 1) << size << " rank(s)";
    // The Work's own deadline (what a backend's watchdog reads) carries the floor too.
    EXPECT_EQ(w->timeout(), size > 1 ? 5ms : ProcessGroup::kOneRankWaitFloor) << size;
  }
}
