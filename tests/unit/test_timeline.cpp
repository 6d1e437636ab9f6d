// --trace: the Chrome trace file rank 0 writes, whole or not at all.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/core/atomic_write.h"
#include "runtime/train/timeline.h"
#include "tests/support/file_size_limit.h"
#include "tests/support/temp_dir.h"
#include "tests/support/thread_process_group.h"

namespace dp {
namespace {

class TimelineFile : public test::TempDirTest {
 protected:
  void write(const std::string& file, int steps) {
    Timeline t;
    t.start(0, 0, 20);
    for (int s = 1; s <= steps; ++s) t.span(Timeline::kCompute, "forward", s, s + 0.5, s);
    test::run_ranks(1, [&](ProcessGroup& pg) { t.write(pg, file, std::chrono::seconds(10)); });
  }
};

TEST_F(TimelineFile, WritesEveryRanksRows) {
  write(path("t.json"), 2);
  const std::vector<uint8_t> b = read_bytes(path("t.json"));
  const std::string text(b.begin(), b.end());
  EXPECT_MENTIONS(text, R"("name":"rank 0")");
  EXPECT_MENTIONS(text, R"("name":"forward","cat":"compute","ph":"X","pid":0)");
  EXPECT_EQ(text.substr(text.size() - 4), "\n]}\n");
}

// A full disk gave a 0-byte trace and exit 0 (the buffered tail's flush was never checked), or
// a truncated trace in place of an earlier good one.
TEST_F(TimelineFile, AFailedWriteIsAnErrorAndKeepsTheEarlierFile) {
  const std::string file = path("t.json");
  write(file, 1);
  const std::vector<uint8_t> before = read_bytes(file);
  ASSERT_GT(before.size(), 128u);
  std::string e;
  {
    test::FileSizeLimit full(128);
    e = test::error_of([&] { write(file, 20); });
  }
  EXPECT_MENTIONS(e, "--trace " + file + ": writing " + staging_path(file) + " failed");
  EXPECT_EQ(read_bytes(file), before);
  EXPECT_FALSE(std::filesystem::exists(staging_path(file)));
  EXPECT_MENTIONS(test::error_of([&] { write("/dev/full", 1); }),
                  "--trace /dev/full: /dev/full exists and is not a regular file");
}

// The trace is written as soon as its last step ends (a run that later fails still has it),
// once: the steps after the window are not recorded.
TEST_F(TimelineFile, IsCompleteAfterItsLastStepAndWrittenOnce) {
  Timeline t;
  t.start(0, /*first_step=*/5, /*max_steps=*/20);  // a resumed run: steps 6 to 25
  EXPECT_FALSE(t.complete_after(24));
  EXPECT_TRUE(t.complete_after(25));
  EXPECT_FALSE(t.recording(26));
  test::run_ranks(1,
                  [&](ProcessGroup& pg) { t.write(pg, path("t.json"), std::chrono::seconds(10)); });
  EXPECT_TRUE(t.written());
  EXPECT_FALSE(t.complete_after(25));
  Timeline off;
  off.start(0, 0, 0);  // no --trace
  EXPECT_FALSE(off.complete_after(0));
}

// Ranks on one kernel share its monotonic clock: each takes the lowest rank's origin, so a rank
// that ran late after the start barrier does not shift its row (4 ranks on 2 cores: ms).
TEST(TimelineOrigin, RanksOfOneHostShareTheLowestRanksOrigin) {
  std::vector<double> origin(3, 0);
  test::run_ranks(3, [&](ProcessGroup& pg) {
    const double local = 1.0e12 + 0.125 + 2500.0 * pg.rank();  // rank 2 ran 5 ms late
    origin[size_t(pg.rank())] = Timeline::shared_origin(pg, local, std::chrono::seconds(10));
  });
  for (double o : origin) EXPECT_EQ(o, 1.0e12 + 0.125);  // exactly: no digits lost on the way
}

}  // namespace
}  // namespace dp
