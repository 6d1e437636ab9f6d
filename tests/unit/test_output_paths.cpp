// runtime/train/output_paths.h: an output that is an input or another output is refused
// before the run, compared as files.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "runtime/data/open_data.h"
#include "runtime/train/output_paths.h"
#include "tests/support/temp_dir.h"

namespace dp {
namespace {

namespace fs = std::filesystem;

class OutputPaths : public test::TempDirTest {
 protected:
  TrainConfig config() const {
    TrainConfig c;
    c.data = "tokens:" + path("tokens.bin");
    return c;
  }
};

TEST_F(OutputPaths, AnOutputOntoTheTrainingTokensIsRefusedHoweverSpelled) {
  write_text(path("tokens.bin"), "t");
  TrainConfig c = config();
  c.dump_params = dir_ + "/./tokens.bin";
  EXPECT_MENTIONS(test::error_of([&] { check_training_paths(c); }),
                  "--dump-params " + c.dump_params + " would overwrite the input file " +
                      path("tokens.bin") + " (--data tokens:");
  fs::create_hard_link(path("tokens.bin"), path("link.bin"));
  c.dump_params = "";
  c.log_json = path("link.bin");
  EXPECT_MENTIONS(test::error_of([&] { check_training_paths(c); }), "--log-json");
  c.log_json = path("run.jsonl");
  EXPECT_NO_THROW(check_training_paths(c));
}

TEST_F(OutputPaths, TheConfigFileTheResumeFileAndTheCheckpointsAreInputs) {
  TrainConfig c = config();
  c.config_file = path("run.cfg");
  c.profile_out = path("run.cfg");
  EXPECT_MENTIONS(test::error_of([&] { check_training_paths(c); }), "(--config)");
  c.profile_out = path("step-00000002.ckpt");
  c.config_file = "";
  c.resume = path("step-00000002.ckpt");
  EXPECT_MENTIONS(test::error_of([&] { check_training_paths(c); }), "(--resume)");
  // A checkpoint's name in --checkpoint-dir: one there now (--resume auto may read it), one
  // this run writes later (its last step's), or the directory's lock.
  fs::create_directory(path("ck"));
  write_text(path("ck/step-00000004.ckpt"), "c");
  c.resume = "auto";
  c.checkpoint_dir = path("ck");
  for (const std::string name :
       {"ck/step-00000004.ckpt", "ck/./step-00000009.ckpt", "ck/.dprun.lock"}) {
    c.profile_out = path(name);
    EXPECT_MENTIONS(test::error_of([&] { check_training_paths(c); }),
                    "--profile-out " + path(name) + " is a file of --checkpoint-dir " + path("ck") +
                        " that the checkpoints use");
  }
  c.profile_out = path("ck/profile.json");
  EXPECT_NO_THROW(check_training_paths(c));
  c.profile_out = path("step-00000004.ckpt");  // beside the directory, not in it
  c.resume = "";
  EXPECT_NO_THROW(check_training_paths(c));
}

TEST_F(OutputPaths, TwoOutputsOnOneFileAreRefused) {
  TrainConfig c = config();
  c.log_json = path("same.json");
  c.trace = dir_ + "/../" + fs::path(dir_).filename().string() + "/same.json";
  EXPECT_MENTIONS(test::error_of([&] { check_training_paths(c); }),
                  "--log-json and --trace name the same file");
  c.trace = path("other.json");
  EXPECT_NO_THROW(check_training_paths(c));
}

TEST(DataFiles, NameWhatEachReaderReads) {
  EXPECT_EQ(data_files("tokens:/d/x.bin"), std::vector<std::string>{"/d/x.bin"});
  const std::vector<std::string> idx = data_files("idx:/d");
  EXPECT_EQ(idx.size(), 8u);
  EXPECT_NE(std::find(idx.begin(), idx.end(), "/d/t10k-labels-idx1-ubyte.gz"), idx.end());
  const std::vector<std::string> cifar = data_files("cifar10:/c/");
  EXPECT_NE(std::find(cifar.begin(), cifar.end(), "/c/test_batch.bin"), cifar.end());
  EXPECT_NE(std::find(cifar.begin(), cifar.end(), "/c/cifar-10-batches-bin/data_batch_5.bin"),
            cifar.end());
  EXPECT_TRUE(data_files("synthetic:100").empty());
  EXPECT_TRUE(data_files("").empty());
}

}  // namespace
}  // namespace dp
