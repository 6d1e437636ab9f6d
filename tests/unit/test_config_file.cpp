// dprun --config FILE through the launcher's option parsing: every problem in the file is
// reported with the file and the line, including what tests/fuzz/fuzz_config found reaching
// Boost unchecked (a key set twice, a byte that is not UTF-8) or hanging it ("%value%").
#include <gtest/gtest.h>
#include <unistd.h>

#include "launcher/options.h"
#include "runtime/train/train_config.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;

namespace {

class ConfigFileTest : public dp::test::TempDirTest {
 protected:
  LaunchOptions parse(const std::string& text) {
    write_text(path("run.cfg"), text);
    std::string a0 = "dprun", a1 = "--config", a2 = path("run.cfg");
    char* argv[] = {a0.data(), a1.data(), a2.data(), nullptr};
    return parse_options(3, argv);
  }
  std::string parse_error(const std::string& text) {
    return error_of([&] { parse(text); });
  }
};

}  // namespace

TEST_F(ConfigFileTest, ReadsKeyValueLines) {
  LaunchOptions o = parse("# comment\nlr = 0.5\neval = true\n\n  epochs=3  # why not\n");
  EXPECT_EQ(o.train.lr, 0.5f);
  EXPECT_TRUE(o.train.eval);
  EXPECT_EQ(o.train.epochs, 3u);
}

TEST_F(ConfigFileTest, KeySetTwiceNamesBothLines) {
  EXPECT_MENTIONS(parse_error("lr = 0.1\n# again\nlr = 0.2\n"),
                  "--config " + path("run.cfg") + ":3: 'lr' is already set on line 1");
}

// A byte order mark at the start (Windows editors) is no part of the first key; elsewhere it
// is an ordinary byte of the line.
TEST_F(ConfigFileTest, AByteOrderMarkAtTheStartIsIgnored) {
  EXPECT_EQ(parse("\xEF\xBB\xBFlr = 0.25\nepochs = 2\n").train.lr, 0.25f);
  EXPECT_MENTIONS(parse_error("lr = 0.25\n\xEF\xBB\xBF"
                              "epochs = 2\n"),
                  ":2: unknown option");
}

// A NUL byte ended the message quoting the line (a UTF-16 file read "unknown option '\xFF\xFE").
TEST_F(ConfigFileTest, ANulByteIsNamed) {
  static const char utf16[] =
      "\xFF\xFE"
      "l\0r\0 \0=\0 \0"
      "1\0\n\0";  // "lr = 1", UTF-16LE
  static const char cut[] = "lr = 0.5\nepochs = 1\0junk\n";
  EXPECT_MENTIONS(parse_error(std::string(utf16, sizeof utf16 - 1)),
                  "--config " + path("run.cfg") +
                      ":1: holds a NUL byte: not a text file (saved "
                      "as UTF-16? save it as UTF-8)");
  EXPECT_MENTIONS(parse_error(std::string(cut, sizeof cut - 1)), ":2: holds a NUL byte");
}

// An empty file is a config of defaults; a pipe or device that gave nothing is a config that
// never arrived (/dev/stdin of a rank mpirun gave no input).
TEST_F(ConfigFileTest, NothingFromAPipeOrDeviceIsAnError) {
  EXPECT_EQ(parse("").train.lr, TrainConfig{}.lr);
  std::string a0 = "dprun", a1 = "--config", a2 = "/dev/null";
  char* argv[] = {a0.data(), a1.data(), a2.data(), nullptr};
  EXPECT_MENTIONS(error_of([&] { parse_options(3, argv); }),
                  "--config /dev/null: read nothing from it (not a regular file");
}

// '#' starts a comment at the start of a line or after a blank only: Boost's reader cut
// "log-json = run#3.jsonl" to "run" and the run wrote its log there.
TEST_F(ConfigFileTest, AHashInsideAValueIsPartOfIt) {
  LaunchOptions o = parse("log-json = run#3.jsonl\ncheckpoint-dir = /scratch/job#3 # the job\n");
  EXPECT_EQ(o.train.log_json, "run#3.jsonl");
  EXPECT_EQ(o.train.checkpoint_dir, "/scratch/job#3");
  EXPECT_EQ(parse("lr = 0.5\t# tab before\n#lr = 2\n").train.lr, 0.5f);
}

// help and version take no value: "help = false" printed the help, and the run trained nothing.
TEST_F(ConfigFileTest, HelpAndVersionAreRefusedInTheFile) {
  EXPECT_MENTIONS(parse_error("version = false\n"),
                  "--config " + path("run.cfg") + ":1: 'version' is a command-line switch only");
  EXPECT_MENTIONS(parse_error("eval = true\nhelp = 0\n"),
                  ":2: 'help' is a command-line switch only");
}

TEST_F(ConfigFileTest, BytesThatAreNotUtf8AreTakenAsTheyAre) {
  // A Latin-1 file name: Boost converted the value from UTF-8 and threw a bare logic_error.
  LaunchOptions o = parse("log-json = r\xe9sultat.jsonl\n");
  EXPECT_EQ(o.train.log_json, "r\xe9sultat.jsonl");
}

TEST_F(ConfigFileTest, BadLinesNameTheFileAndLine) {
  const std::string where = "--config " + path("run.cfg") + ":2: ";
  EXPECT_MENTIONS(parse_error("eval = true\nnot a pair\n"), where + "expected 'key = value'");
  EXPECT_MENTIONS(parse_error("eval = true\nfrobnicate = 1\n"), where + "unknown option");
  EXPECT_MENTIONS(parse_error("eval = true\nepochs = -1\n"), where + "--epochs -1");
  EXPECT_MENTIONS(parse_error("eval = true\nlr = fast\n"),
                  where + "lr = fast: not a valid value for --lr");
}

TEST_F(ConfigFileTest, AValueHoldingABoostPlaceholderIsReportedNotHung) {
  // Boost's message for a bad value looped forever on "%value%"; SIGALRM fails a regression.
  alarm(30);
  EXPECT_MENTIONS(parse_error("lr = %value%\n"),
                  "--config " + path("run.cfg") + ":1: lr = %value%: not a valid value for --lr");
  EXPECT_MENTIONS(parse_error("eval = 50%\n"), ":1: eval = 50%");
  alarm(0);
}

TEST(CommandLine, AValueHoldingABoostPlaceholderIsReportedNotHung) {
  // The same Boost loop on the command line ("dprun --lr %value%"); SIGALRM fails a regression.
  alarm(30);
  std::string a0 = "dprun", a1 = "--lr", a2 = "%value%";
  char* argv[] = {a0.data(), a1.data(), a2.data(), nullptr};
  EXPECT_MENTIONS(
      error_of([&] { parse_options(3, argv); }),
      "--lr: not a valid value or usage (the value is not repeated here: it holds a '%')");
  alarm(0);
}

TEST_F(ConfigFileTest, AKeyWithDashesNamesTheFileAndLine) {
  // "-h" matched --help's short name and reached Boost's reader, which named no file (fuzz_config).
  EXPECT_MENTIONS(parse_error("-h=f1\n"),
                  "--config " + path("run.cfg") + ":1: '-h': keys are long");
  EXPECT_MENTIONS(parse_error("eval = true\n--lr = 2\n"), ":2: '--lr': keys are long");
}

namespace {
LaunchOptions parse_args(std::vector<std::string> args) {
  args.insert(args.begin(), "dprun");
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return parse_options(int(args.size()), argv.data());
}
std::string parse_args_error(std::vector<std::string> args) {
  return error_of([&] { parse_args(std::move(args)); });
}
}  // namespace

// The cnn's training defaults include Nesterov momentum. A default never contradicts what
// the user gave: --momentum 0 drops it (it used to fail with "--nesterov needs --momentum >
// 0", an option the user never gave), and --nesterov=false turns it off on the command line.
TEST(CommandLine, AModelsNesterovDefaultYieldsToTheUser) {
  LaunchOptions o = parse_args({"--model", "cnn"});
  EXPECT_TRUE(o.train.nesterov);
  EXPECT_EQ(o.train.momentum, 0.9f);
  o = parse_args({"--model", "cnn", "--momentum", "0"});
  EXPECT_FALSE(o.train.nesterov);
  EXPECT_EQ(o.train.momentum, 0.0f);
  o = parse_args({"--model", "cnn", "--nesterov=false"});
  EXPECT_FALSE(o.train.nesterov);
  EXPECT_EQ(o.train.momentum, 0.9f);
  // A switch still: --nesterov alone sets it, and does not take the next word as its value.
  o = parse_args({"--model", "mlp", "--nesterov", "--momentum", "0.5"});
  EXPECT_TRUE(o.train.nesterov);
  EXPECT_EQ(o.train.momentum, 0.5f);
  EXPECT_FALSE(parse_args({"--model", "mlp"}).train.nesterov);
  EXPECT_MENTIONS(error_of([] { parse_args({"--nesterov=maybe"}); }), "--nesterov");
}

// The gpt decays only its 2-D tensors by default (llm.c, nanoGPT); the others decay every
// parameter (torch.optim's default); either way the user's word wins.
TEST(ConfigFile, WeightDecay1dIsOffForTheGptOnly) {
  EXPECT_FALSE(parse_args({"--model", "gpt"}).train.weight_decay_1d);
  EXPECT_TRUE(parse_args({"--model", "gpt", "--weight-decay-1d=true"}).train.weight_decay_1d);
  EXPECT_TRUE(parse_args({"--model", "cnn"}).train.weight_decay_1d);
  EXPECT_FALSE(parse_args({"--model", "mlp", "--weight-decay-1d=false"}).train.weight_decay_1d);
}

// --min-lr only shapes the cosine decay: with the constant schedule it would be ignored.
TEST(CommandLine, MinLrWithTheConstantScheduleIsRefused) {
  EXPECT_MENTIONS(error_of([] {
                    parse_args({"--lr-schedule", "constant", "--min-lr", "0.001"});
                  }),
                  "--min-lr 0.001 applies to --lr-schedule cosine only");
  LaunchOptions o = parse_args({"--lr-schedule", "constant", "--warmup-steps", "5"});
  EXPECT_NO_THROW(validate(o.train));
  o = parse_args({"--min-lr", "0.001"});
  EXPECT_NO_THROW(validate(o.train));
}

// Options of the other optimizer, or sampling options without --sample-every, were dropped
// without a word. Only given values count: the cnn's Nesterov default goes with AdamW, and a
// value from --config is given too.
TEST(CommandLine, OptionsThatWouldBeIgnoredAreRefused) {
  EXPECT_MENTIONS(parse_args_error({"--optimizer", "adamw", "--momentum", "0.9"}),
                  "--momentum applies to --optimizer sgd");
  EXPECT_MENTIONS(parse_args_error({"--model", "gpt", "--nesterov", "--momentum", "0.5"}),
                  "applies to --optimizer sgd (this run's is adamw");
  EXPECT_MENTIONS(parse_args_error({"--adam-eps", "1e-6"}),
                  "--adam-eps applies to --optimizer adamw (this run's is sgd)");
  EXPECT_MENTIONS(parse_args_error({"--sample-temperature", "0"}),
                  "--sample-temperature needs --sample-every N");
  LaunchOptions o = parse_args({"--model", "cnn", "--optimizer", "adamw"});
  EXPECT_EQ(o.train.optimizer, "adamw");
  // Turning the model's SGD defaults off asks for nothing AdamW ignores.
  o = parse_args({"--model", "cnn", "--optimizer", "adamw", "--nesterov=false", "--momentum", "0"});
  EXPECT_FALSE(o.train.nesterov);
  o = parse_args(
      {"--model", "gpt", "--beta2", "0.99", "--sample-every", "5", "--sample-top-k", "3"});
  EXPECT_EQ(o.train.beta2, 0.99f);
}

TEST_F(ConfigFileTest, AnotherOptimizersOptionInTheFileIsRefused) {
  EXPECT_MENTIONS(parse_error("optimizer = adamw\nmomentum = 0.5\n"),
                  "--momentum applies to --optimizer sgd");
}

// A cap past 2^50 bytes: its conversion to bytes overflowed, and the Reducer refused "bucket
// caps ... (got 1048576 and 0 bytes)" through MPI_Abort, without the option's name.
TEST(CommandLine, HugeBucketCapsAreRefusedByName) {
  EXPECT_MENTIONS(error_of([] {
                    validate(parse_args({"--bucket-cap-mb", "2e13"}).train);
                  }),
                  "--bucket-cap-mb must be a number of MB of at least one float (4 bytes) and at "
                  "most 1073741824 MB (2^50 bytes), got 20000000000000");
  EXPECT_MENTIONS(error_of([] {
                    validate(parse_args({"--first-bucket-mb", "1e30"}).train);
                  }),
                  "--first-bucket-mb must be a number of MB");
  EXPECT_NO_THROW(validate(parse_args({"--bucket-cap-mb", "1073741824"}).train));
  // Decimal numbers only, as every other option (stod took hexadecimal and leading blanks).
  EXPECT_MENTIONS(parse_args_error({"--bucket-cap-mb", "0x10"}),
                  "--bucket-cap-mb 0x10: expected a number of MiB or auto");
  EXPECT_MENTIONS(parse_args_error({"--first-bucket-mb", " 5"}),
                  "--first-bucket-mb  5: expected a number");
  EXPECT_EQ(parse_args({"--bucket-cap-mb", "2.5e1"}).train.bucket_cap_mb, 25.0);
}

// --batch-size 4611686018427387904 (2^62) overflowed the batch buffer's byte count and failed
// in the first step, as "view [0, 156800) out of range", through MPI_Abort.
TEST(CommandLine, HugeBatchSizesAreRefusedByName) {
  EXPECT_MENTIONS(error_of([] {
                    validate(parse_args({"--batch-size", "4611686018427387904"}).train);
                  }),
                  "--batch-size must be at most 2147483647 (got 4611686018427387904)");
  EXPECT_MENTIONS(error_of([] {
                    validate(parse_args({"--batch-size", "2147483648"}).train);
                  }),
                  "--batch-size must be at most 2147483647");
  EXPECT_MENTIONS(error_of([] {
                    validate(parse_args({"--eval-batch-size", "18446744073709551615"}).train);
                  }),
                  "--eval-batch-size must be at most 2147483647");
  EXPECT_NO_THROW(validate(parse_args({"--batch-size", "2147483647"}).train));
}

// Words that are not options: "dprun predcit" trained for 10 epochs with every default.
TEST(CommandLine, WordsThatAreNotOptionsAreRefused) {
  EXPECT_MENTIONS(error_of([] {
                    parse_args({"predcit", "--steps", "1"});
                  }),
                  "unknown command 'predcit' (commands: launch, predict, bench-allreduce, "
                  "prepare-text");
  EXPECT_MENTIONS(error_of([] {
                    parse_args({"--steps", "1", "stray", "words"});
                  }),
                  "unexpected word 'stray' on the command line");
  EXPECT_NO_THROW(parse_args({"--steps", "1"}));
}

// --steps alone is the run's length (Hugging Face's max_steps): the default --epochs 10 cut
// "--data synthetic:640 --steps 200" to 100 steps. An --epochs the user gave, on the command
// line or in the file, still ends the run when it comes first.
TEST_F(ConfigFileTest, StepsAloneLiftsTheDefaultEpochLimit) {
  EXPECT_EQ(parse_args({"--steps", "200"}).train.epochs, 0u);
  EXPECT_EQ(parse_args({"--steps", "200", "--epochs", "10"}).train.epochs, 10u);
  EXPECT_EQ(parse_args({"--epochs", "3"}).train.epochs, 3u);
  EXPECT_EQ(parse_args({}).train.epochs, 10u);
  EXPECT_EQ(parse("steps = 200\n").train.epochs, 0u);
  EXPECT_EQ(parse("steps = 200\nepochs = 10\n").train.epochs, 10u);
  EXPECT_EQ(parse("epochs = 2\n").train.epochs, 2u);
}
