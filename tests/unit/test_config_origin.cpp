// A value from --config FILE that parses but fails a later check (validate(), a bucket cap, the
// model's name, the data it names) is reported with the file and line it came from; the same
// value on the command line, which wins over the file, is not (launcher/config_origin.h).
#include <gtest/gtest.h>

#include <vector>

#include "launcher/config_origin.h"
#include "launcher/options.h"
#include "runtime/data/open_data.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;

namespace {

class ConfigOriginTest : public dp::test::TempDirTest {
 protected:
  // dprun --config DIR/run.cfg EXTRA...
  LaunchOptions parse(const std::string& text, std::vector<std::string> extra = {}) {
    write_text(path("run.cfg"), text);
    std::vector<std::string> args = {"dprun", "--config", path("run.cfg")};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    return parse_options(static_cast<int>(args.size()), argv.data());
  }
  std::string parse_error(const std::string& text, std::vector<std::string> extra = {}) {
    return error_of([&] { parse(text, extra); });
  }
  std::string at(int line) const {
    return "(from " + path("run.cfg") + ":" + std::to_string(line) + ")";
  }
};

}  // namespace

TEST_F(ConfigOriginTest, ALaterCheckNamesTheFileAndLine) {
  const std::string head = "# run.cfg\neval = true\n";  // the bad value is on line 3
  EXPECT_MENTIONS(parse_error(head + "batch-size = 0\n"),
                  "--batch-size must be at least 1 (got 0) " + at(3));
  EXPECT_MENTIONS(parse_error(head + "lr = -1\n"),
                  "--lr must be a positive number (got -1) " + at(3));
  EXPECT_MENTIONS(parse_error(head + "bucket-cap-mb = abc\n"),
                  "--bucket-cap-mb abc: expected a number of MiB or auto " + at(3));
  EXPECT_MENTIONS(parse_error(head + "model = nosuch\n"), "--model nosuch: unknown model");
  EXPECT_MENTIONS(parse_error(head + "model = nosuch\n"), at(3));
  EXPECT_MENTIONS(parse_error(head + "optimizer = lion\n"), at(3));
  EXPECT_MENTIONS(parse_error(head + "timeout = 0\n"), at(3));
  EXPECT_MENTIONS(parse_error(head + "grad-accum = 0\n"),
                  "--grad-accum must be at least 1 (got 0) " + at(3));
}

TEST_F(ConfigOriginTest, AnUnsignedGivenANegativeValueNamesTheLine) {
  // Caught while reading the file (Boost would wrap -3 around to 2^64 - 3).
  EXPECT_MENTIONS(parse_error("eval = true\nepochs = -3\n"),
                  "--config " + path("run.cfg") + ":2: --epochs -3: expected a whole number");
}

TEST_F(ConfigOriginTest, EveryOptionOfTheMessageFromTheFileIsNamed) {
  // --min-lr's check involves --lr: both came from the file, on their own lines.
  const std::string msg = parse_error("lr = 0.1\nmin-lr = 0.5\n");
  EXPECT_MENTIONS(msg,
                  "(--min-lr from " + path("run.cfg") + ":2, --lr from " + path("run.cfg") + ":1)");
  // Only --min-lr from the file: the message names its line alone.
  EXPECT_MENTIONS(parse_error("min-lr = 0.5\n", {"--lr", "0.1"}), at(1));
  // Only the partner --lr from the file: named as such, not as the bad value's origin.
  EXPECT_MENTIONS(parse_error("lr = 0.01\n", {"--min-lr", "0.02"}),
                  "(got 0.02) (--lr from " + path("run.cfg") + ":1)");
}

// The optimizers' own checks name no option, so values from the file lost their line there.
TEST_F(ConfigOriginTest, OptimizerSettingsNameTheirLine) {
  EXPECT_MENTIONS(parse_error("optimizer = adamw\nbeta1 = 1\n"),
                  "--beta1 must be in [0, 1) (got 1) " + at(2));
  EXPECT_MENTIONS(parse_error("beta2 = -0.5\n"), "--beta2 must be in [0, 1) (got -0.5) " + at(1));
  EXPECT_MENTIONS(parse_error("adam-eps = inf\n"), "--adam-eps must be a finite number >= 0");
  EXPECT_MENTIONS(parse_error("weight-decay = inf\n"),
                  "--weight-decay must be a finite number >= 0 (got inf) " + at(1));
  // inf was accepted here and aborted the job at its first step.
  EXPECT_MENTIONS(parse_error("clip-grad-norm = inf\n"),
                  "--clip-grad-norm must be a finite number >= 0 (0: off; got inf) " + at(1));
  // Refused at start-up, not after the training, where the sample is generated.
  EXPECT_MENTIONS(
      parse_error("sample-length = 18446744073709551615\n"),
      "--sample-length must be from 1 to 1000000 tokens (got 18446744073709551615) " + at(1));
}

TEST_F(ConfigOriginTest, TheCommandLineWinsAndIsNotBlamedOnTheFile) {
  // The file's good value is overridden by the command line's bad one: no file origin.
  const std::string msg = parse_error("batch-size = 8\n", {"--batch-size", "0"});
  EXPECT_MENTIONS(msg, "--batch-size must be at least 1 (got 0)");
  EXPECT_EQ(msg.find("(from"), std::string::npos) << msg;
  // The file's bad value is overridden by a good one: no error at all.
  EXPECT_EQ(parse("batch-size = 0\n", {"--batch-size", "4"}).train.batch_size, 4u);
  EXPECT_EQ(parse("batch-size = 0\n", {"--batch-size", "4"}).config_origins.count("batch-size"),
            0u);
}

TEST_F(ConfigOriginTest, DataThatCannotBeOpenedNamesTheLine) {
  // --data is opened after parsing (the Trainer): the launcher annotates that error with the
  // origins parse_options recorded, as here.
  const LaunchOptions o = parse("eval = true\ndata = idx:" + path("nope") + "\n");
  ASSERT_EQ(o.config_origins.at("data"), path("run.cfg") + ":2");
  const std::string msg = with_config_origin(
      error_of([&] { open_data(o.train.data, "", DataOptions{}); }), o.config_origins);
  EXPECT_MENTIONS(msg, "--data idx:" + path("nope") + ": data directory");
  EXPECT_MENTIONS(msg, at(2));
}

TEST(ConfigOrigin, OnlyOptionTokensFromTheFileAreAnnotated) {
  const ConfigOrigins origins = {{"lr", "run.cfg:7"}, {"data", "run.cfg:2"}};
  EXPECT_EQ(with_config_origin("--lr must be positive", origins),
            "--lr must be positive (from run.cfg:7)");
  // --lr-schedule is another option; a path holding "--lr" is not an option.
  EXPECT_EQ(with_config_origin("--lr-schedule x: unknown", origins), "--lr-schedule x: unknown");
  EXPECT_EQ(with_config_origin("cannot open /tmp/a--lr", origins), "cannot open /tmp/a--lr");
  EXPECT_EQ(with_config_origin("--batch-size must be at least 1", origins),
            "--batch-size must be at least 1");
  // The config reader's own messages name their line already.
  EXPECT_EQ(with_config_origin("--config run.cfg:7: lr = x: bad --lr", origins),
            "--config run.cfg:7: lr = x: bad --lr");
  EXPECT_EQ(with_config_origin("--lr x", {}), "--lr x");
  // A partner from the file, the subject not: the partner is named.
  EXPECT_EQ(with_config_origin("--warmup-steps 5 is too long, or --lr 1", origins),
            "--warmup-steps 5 is too long, or --lr 1 (--lr from run.cfg:7)");
}
