#include <gtest/gtest.h>

#include <map>

#include "runtime/core/version.h"
#include "runtime/data/synthetic.h"
#include "runtime/data/token_dataset.h"
#include "runtime/data/token_file.h"
#include "runtime/train/config_check.h"
#include "tests/support/temp_dir.h"

using namespace dp;

namespace {

std::vector<std::string> lines(const TrainConfig& c, size_t train_size = 100) {
  SyntheticDataset train(train_size, 8, 3, 1), test(10, 8, 3, 1, train_size);
  std::vector<std::string> out;
  for (const auto& [name, value] : collective_settings(c, train, &test)) {
    out.push_back(name + "\t");
    out.back() += value;
  }
  return out;
}

}  // namespace

TEST(SettingsCheck, EqualSettingsPass) {
  TrainConfig c;
  EXPECT_EQ(describe_settings_mismatch({lines(c), lines(c), lines(c)}), "");
}

TEST(SettingsCheck, NamesTheOptionTheValuesAndTheRank) {
  TrainConfig a, b;
  b.grad_accum = 4;
  std::string msg = describe_settings_mismatch({lines(a), lines(a), lines(b)});
  EXPECT_NE(msg.find("--grad-accum is '1' on rank 0 but '4' on rank 2"), std::string::npos) << msg;
}

TEST(SettingsCheck, ComparesTheDataNotItsPath) {
  TrainConfig a, b;
  b.data = "idx:/somewhere/else";  // node-local copies may live elsewhere
  EXPECT_EQ(describe_settings_mismatch({lines(a), lines(b)}), "");
  std::string msg = describe_settings_mismatch({lines(a, 100), lines(a, 90)});
  EXPECT_NE(msg.find("training data"), std::string::npos) << msg;
}

TEST(SettingsCheck, OptionsThatAddCollectivesMustAgree) {
  TrainConfig a;
  auto differs = [&](const TrainConfig& b, const std::string& option) {
    const std::string msg = describe_settings_mismatch({lines(a), lines(b)});
    EXPECT_NE(msg.find(option), std::string::npos) << option << ": " << msg;
  };
  TrainConfig b = a;
  b.checkpoint_dir = "ckpt";
  differs(b, "--checkpoint-dir is 'off' on rank 0 but 'on' on rank 1");
  b = a;
  b.checkpoint_every = 50;
  differs(b, "--checkpoint-every");
  b = a;
  b.resume = "auto";
  differs(b, "--resume");
  b = a;
  b.eval_only = true;
  differs(b, "--eval-only");
  b = a;
  b.on_nonfinite = "skip";
  differs(b, "--on-nonfinite is 'abort' on rank 0 but 'skip' on rank 1");
  // Only rank 0 writes and reads the files: their paths may differ.
  TrainConfig c = a, d = a;
  c.checkpoint_dir = "/shared/ckpt";
  d.checkpoint_dir = "/local/ckpt";
  c.resume = "/shared/ckpt/step-10.ckpt";
  d.resume = "auto";
  EXPECT_EQ(describe_settings_mismatch({lines(c), lines(d)}), "");
}

// Every rank samples (no rank waits for rank 0's text): ranks sampling different lengths
// drifted apart and the job timed out instead of naming the option.
TEST(SettingsCheck, SamplingSettingsMustAgree) {
  TrainConfig a, b = a;
  b.sample_length = 6000;
  EXPECT_MENTIONS(describe_settings_mismatch({lines(a), lines(b)}),
                  "--sample-length is '200' on rank 0 but '6000' on rank 1");
  b = a;
  b.sample_every = 5;
  EXPECT_MENTIONS(describe_settings_mismatch({lines(a), lines(b)}), "--sample-every");
  b = a;
  b.sample_temperature = 0;
  EXPECT_MENTIONS(describe_settings_mismatch({lines(a), lines(b)}), "--sample-temperature");
  b = a;
  b.sample_top_k = 3;
  EXPECT_MENTIONS(describe_settings_mismatch({lines(a), lines(b)}), "--sample-top-k");
}

// A preset names values that are compared one by one: the same model given by --preset on
// one rank and by its options on another agrees; a different resolved model does not.
TEST(SettingsCheck, APresetIsComparedByTheModelItGives) {
  TrainConfig a, b;
  a.model = b.model = "gpt";
  a.model_options = {{"preset", "gpt-tiny"}};
  b.model_options = {{"layers", "2"}, {"heads", "2"}, {"embed", "64"}, {"context", "64"}};
  EXPECT_EQ(describe_settings_mismatch({lines(a), lines(b)}), "");
  b.model_options["layers"] = "3";
  EXPECT_MENTIONS(describe_settings_mismatch({lines(a), lines(b)}),
                  "--layers is '2' on rank 0 but '3' on rank 1");
}

TEST(SettingsCheck, OutputOnlyOptionsMayDiffer) {
  TrainConfig a, b;
  b.log_json = "rank1.jsonl";
  b.log_interval = 7;
  b.quiet = true;
  EXPECT_EQ(describe_settings_mismatch({lines(a), lines(b)}), "");
}

TEST(SettingsCheck, DataFingerprintTellsDataOfTheSameShapeApart) {
  SyntheticDataset a(100, 8, 3, 1), same(100, 8, 3, 1), other(100, 8, 3, 2);
  EXPECT_EQ(data_fingerprint(a), data_fingerprint(same));
  EXPECT_NE(data_fingerprint(a), data_fingerprint(other));
  EXPECT_EQ(data_fingerprint(a).size(), 8u);
}

class SettingsCheckTokens : public dp::test::TempDirTest {};

// Token data counts windows, not tokens: 100 tokens in windows of 8 are 12 windows.
TEST_F(SettingsCheckTokens, TokenDataIsDescribedInWindows) {
  std::vector<uint16_t> t(100, 7);
  write_token_file(path("t.bin"), t.data(), t.size(), 257);
  TokenDataset train(path("t.bin"), 8), test(path("t.bin"), 16);
  TrainConfig c;
  c.model = "gpt";
  std::map<std::string, std::string> s;
  for (const auto& [name, value] : collective_settings(c, train, &test)) s[name] = value;
  EXPECT_EQ(s["training data"], "12 windows of 8 tokens (int32), vocabulary 257");
  EXPECT_EQ(s["test data"], "6 windows");
}

// Two builds may differ in their maths with the same options: a rank of another version (a
// node with an older install) is named, ahead of any setting its version lists differently.
TEST(SettingsCheck, AnotherVersionOfDprunIsNamedFirst) {
  TrainConfig a;
  std::vector<std::string> other = lines(a);
  ASSERT_EQ(other.at(0), std::string("dprun version\t") + dprun_version());
  other[0] = "dprun version\t0.0.9";
  other.pop_back();  // and one setting fewer
  EXPECT_EQ(describe_settings_mismatch({lines(a), other}),
            std::string("the ranks were started with different settings: dprun version is '") +
                dprun_version() +
                "' on rank 0 but '0.0.9' on rank 1; every rank must run with the same options "
                "and equivalent data");
}

// A model option given on one rank only, whose default comes from the data (gpt's
// --vocab-size): "not given", not ''.
TEST(SettingsCheck, AnOptionGivenOnOneRankOnlySaysNotGiven) {
  TrainConfig a, b;
  a.model = b.model = "gpt";
  b.model_options["vocab-size"] = "257";
  EXPECT_MENTIONS(describe_settings_mismatch({lines(a), lines(b)}),
                  "--vocab-size is not given on rank 0 but '257' on rank 1");
}
