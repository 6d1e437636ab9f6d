// runtime/train/metrics.h: the epoch's mean loss over the steps that updated, and --log-json's
// writer: step lines reach the file within about a second even when no further step comes (a
// stalled run killed by another rank's --timeout must leave the lines it had), records other
// than steps at once, and a moved log keeps writing.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "runtime/train/metrics.h"

using namespace dp;

namespace {

size_t lines_in(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

std::string temp_path(const char* name) {
  return ::testing::TempDir() + name + std::to_string(::getpid()) + ".jsonl";
}

}  // namespace

TEST(JsonLog, AStepLineReachesTheFileWithoutAnotherStep) {
  const std::string path = temp_path("steps");
  JsonLog log(path);
  StepMetrics m;
  m.step = 1;
  log.write_step(m);  // buffered: the previous write was just now
  m.step = 2;
  log.write_step(m);
  EXPECT_EQ(lines_in(path), 0u) << "step lines are buffered (one write a second)";
  // No further call: the background writer must put them out. The limit is generous (the
  // promise is a second); a writer that waits for the next step never gets there.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (lines_in(path) < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(lines_in(path), 2u);
  std::remove(path.c_str());
}

TEST(JsonLog, OtherRecordsAreWrittenAtOnceAndAMovedLogKeepsWriting) {
  const std::string path = temp_path("records");
  JsonLog log(path);
  log.write({{"type", "eval"}, {"step", 3}});
  EXPECT_EQ(lines_in(path), 1u);
  JsonLog moved = std::move(log);
  EXPECT_FALSE(log.is_open());  // NOLINT(bugprone-use-after-move): the moved-from state
  moved.write_step(StepMetrics{});
  moved.flush();
  EXPECT_EQ(lines_in(path), 2u);
  std::remove(path.c_str());
}

TEST(EpochLoss, MeanOverTheStepsThatUpdated) {
  EpochLoss e;
  EXPECT_EQ(e.mean(), 0.0);  // no step yet
  e.add(std::nan(""), true);
  EXPECT_TRUE(std::isnan(e.mean())) << "every step skipped: no mean";
  e.add(2.0, false);
  e.add(7.0, true);  // a finite loss of a skipped step is left out too
  e.add(4.0, false);
  EXPECT_EQ(e.mean(), 3.0);
  EXPECT_EQ(e.steps, 4u);
  EXPECT_EQ(e.skipped, 2u);
}
