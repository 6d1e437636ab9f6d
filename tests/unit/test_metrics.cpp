// runtime/train/metrics.h: the epoch's mean loss over the steps that updated (also a progress
// line's, with its ETA: runtime/train/report.h), and --log-json's
// writer: step lines reach the file within about a second even when no further step comes (a
// stalled run killed by another rank's --timeout must leave the lines it had), records other
// than steps at once, and a moved log keeps writing.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/train/metrics.h"
#include "runtime/train/report.h"

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
  // NOLINTNEXTLINE(bugprone-use-after-move,clang-analyzer-cplusplus.Move): the moved-from state
  EXPECT_FALSE(log.is_open());
  moved.write_step(StepMetrics{});
  moved.flush();
  EXPECT_EQ(lines_in(path), 2u);
  std::remove(path.c_str());
}

TEST(JsonLog, ARecordNamingAPathThatIsNotUtf8IsWrittenNotThrown) {
  // A checkpoint directory named in Latin-1: the record of a checkpoint that was written must
  // not fail the run (nlohmann's dump() throws on such bytes).
  const std::string path = temp_path("latin1");
  JsonLog log(path);
  log.write({{"type", "checkpoint"}, {"path", "ckpt-caf\xe9/step-1.ckpt"}});
  std::ifstream in(path);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(nlohmann::json::parse(line).at("path"), "ckpt-caf\xef\xbf\xbd/step-1.ckpt");
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

// A progress interval holding a step skipped by --on-nonfinite skip printed "loss nan".
TEST(Progress, AnIntervalLeavesSkippedStepsOutOfItsLoss) {
  EpochLoss interval;
  interval.add(2.0, false);
  EXPECT_EQ(interval_loss_text(interval), "loss 2.0000");
  interval.add(std::nan(""), true);
  interval.add(4.0, false);
  EXPECT_EQ(interval_loss_text(interval), "loss 3.0000 (1 skipped)");
  EpochLoss all_skipped;
  all_skipped.add(std::nan(""), true);
  EXPECT_EQ(interval_loss_text(all_skipped), "loss n/a (1 skipped)");
}

// The ETA of a run resumed at step 100 of 200: 10 s for its own 10 steps leaves 90 steps, 90 s
// (the whole training's 110 steps made it 8.2 s).
TEST(Progress, TheEtaCountsOnlyThisProcesssSteps) {
  EXPECT_DOUBLE_EQ(eta_seconds(110, 100, 200, 10.0), 90.0);
  EXPECT_DOUBLE_EQ(eta_seconds(10, 0, 200, 10.0), 190.0);
  EXPECT_EQ(eta_seconds(200, 100, 200, 10.0), 0.0);
}

TEST(JsonLog, ASkippedStepIsMarked) {
  const std::string path = temp_path("skipped");
  {
    JsonLog log(path);
    StepMetrics m;
    m.step = 1;
    m.grad_norm = 0.75;
    log.write_step(m);
    m.step = 2;
    m.loss = std::nan("");
    m.grad_norm = std::nan("");
    m.skipped = true;
    m.tokens_per_s = 5;
    log.write_step(m);
    log.flush();
  }
  std::ifstream in(path);
  std::string first, second;
  std::getline(in, first);
  std::getline(in, second);
  const auto a = nlohmann::json::parse(first), b = nlohmann::json::parse(second);
  EXPECT_FALSE(a.contains("skipped"));
  EXPECT_TRUE(b.at("skipped").get<bool>());
  EXPECT_TRUE(b.at("loss").is_null());
  EXPECT_EQ(a.at("grad_norm").get<double>(), 0.75);
  EXPECT_TRUE(b.at("grad_norm").is_null());
  EXPECT_EQ(b.at("tokens_per_s").get<double>(), 5.0);
  std::remove(path.c_str());
}

namespace {

std::string contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

}  // namespace

// A run killed in the middle of a write leaves its log ending inside a record; the resumed run
// appends after the last whole line (its resume marker on a line of its own), not onto the
// torn record, which glued the two into one line no JSON reader takes. Long torn records
// (a second of step lines is megabytes) span several of the reader's chunks.
TEST(JsonLog, AppendingCutsATornLastRecord) {
  const std::string path = temp_path("torn");
  const std::string whole = "{\"type\":\"step\",\"step\":1}\n{\"type\":\"step\",\"step\":2}\n";
  for (const size_t torn : {size_t(17), size_t(10000)}) {
    SCOPED_TRACE(torn);
    write_file(path, whole + "{\"type\":\"step\",\"step\":3,\"loss\":" + std::string(torn, '1'));
    {
      JsonLog log(path, /*append=*/true);
      log.write({{"type", "resume"}, {"step", 2}});
    }
    EXPECT_EQ(contents(path), whole + "{\"step\":2,\"type\":\"resume\"}\n");
  }
  // A file that is one torn record holds nothing whole: it becomes empty first.
  write_file(path, "{\"type\":\"st");
  { JsonLog(path, true).write({{"type", "resume"}}); }
  EXPECT_EQ(contents(path), "{\"type\":\"resume\"}\n");
  // A log that ends with a whole line is appended to as it is.
  write_file(path, whole);
  { JsonLog(path, true).write({{"type", "resume"}}); }
  EXPECT_EQ(contents(path), whole + "{\"type\":\"resume\"}\n");
  // A whole record that lost only its line end (killed between the two) is kept.
  write_file(path, whole + "{\"type\":\"checkpoint\",\"step\":3}");
  { JsonLog(path, true).write({{"type", "resume"}}); }
  EXPECT_EQ(contents(path),
            whole + "{\"type\":\"checkpoint\",\"step\":3}\n{\"type\":\"resume\"}\n");
  // A file whose last line is no record is not a dprun log: refused, and left as it was.
  write_file(path, "some notes\nnot json");
  try {
    JsonLog log(path, true);
    FAIL() << "expected a dp::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("its last line is not a JSON record"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(contents(path), "some notes\nnot json");
  std::remove(path.c_str());
}
