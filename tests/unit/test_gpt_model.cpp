// The gpt model as the registry describes and builds it: options, presets, checks with
// errors a user can act on, the description line, GPT-2's initialisation, and input checks.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "models/gpt.h"
#include "models/registry.h"
#include "runtime/nn/embedding.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;

namespace {

DataShape tokens(int64_t seq, int64_t vocab) {
  return {"tokens", {seq}, vocab};
}

std::string build_error(const ModelOptionValues& given, const DataShape& data) {
  const ModelEntry& e = find_model("gpt");
  try {
    e.build(make_model_args(e, given, data, 0));
  } catch (const Error& err) {
    return err.what();
  }
  return "";
}

double stddev(const Tensor& t) {
  double s = 0, s2 = 0;
  for (float v : t.to_vector()) s += v, s2 += double(v) * v;
  const double n = double(t.numel()), m = s / n;
  return std::sqrt(s2 / n - m * m);
}

}  // namespace

TEST(GptModel, RegistryEntryDescribesTheModel) {
  const ModelEntry& e = find_model("gpt");
  EXPECT_EQ(e.loss, LossKind::next_token);
  EXPECT_EQ(e.data_kinds, std::vector<std::string>{"tokens"});
  const ModelArgs defaults = make_model_args(e, {}, tokens(128, 257), 0);
  EXPECT_EQ(e.sequence_length(defaults), 128);
  EXPECT_EQ(defaults.get_int("layers"), 4);
  EXPECT_EQ(defaults.get_int("heads"), 4);
  EXPECT_EQ(defaults.get_int("embed"), 128);
  const ModelArgs small = make_model_args(e, {{"preset", "gpt2-small"}}, tokens(1024, 257), 0);
  EXPECT_EQ(small.get_int("layers"), 12);
  EXPECT_EQ(small.get_int("heads"), 12);
  EXPECT_EQ(small.get_int("embed"), 768);
  EXPECT_EQ(small.get_int("vocab-size"), 50257);
  EXPECT_EQ(e.sequence_length(small), 1024);
  // The command line wins over the preset.
  EXPECT_EQ(make_model_args(e, {{"preset", "gpt2-small"}, {"layers", "2"}}, tokens(1024, 257), 0)
                .get_int("layers"),
            2);
  EXPECT_THROW(make_model_args(e, {{"preset", "gpt5"}}, tokens(8, 8), 0), Error);
}

TEST(GptModel, BuildsTheDefaultWithItsDescription) {
  const ModelEntry& e = find_model("gpt");
  const BuiltModel m = e.build(make_model_args(e, {}, tokens(128, 257), 1));
  // V C + context C + layers (12 C^2 + 13 C) + 2 C, wte counted once.
  const size_t C = 128, L = 4, V = 257, ctx = 128;
  const size_t n = V * C + ctx * C + L * (12 * C * C + 13 * C) + 2 * C;
  EXPECT_EQ(m.description, "gpt 4 layers, 4 heads, 128 wide, context 128, vocab 257");
  auto* gpt = dynamic_cast<GptModel*>(m.module.get());
  ASSERT_NE(gpt, nullptr);
  EXPECT_EQ(gpt->num_parameters(), n);
  EXPECT_EQ(gpt_parameter_count(gpt->config()), std::optional<size_t>(n));
  // --vocab-size pads the table beyond the data's vocabulary.
  const BuiltModel padded =
      e.build(make_model_args(e, {{"vocab-size", "300"}, {"layers", "1"}}, tokens(128, 257), 1));
  EXPECT_EQ(dynamic_cast<GptModel&>(*padded.module).config().vocab, 257u);
  EXPECT_EQ(dynamic_cast<GptModel&>(*padded.module).config().padded_vocab, 300u);
  EXPECT_EQ(dynamic_cast<GptModel&>(*padded.module).wte().value.dim(0), 300);
  auto& padded_gpt = dynamic_cast<GptModel&>(*padded.module);
  EXPECT_EQ(gpt_parameter_count(padded_gpt.config()),
            std::optional<size_t>(padded_gpt.num_parameters()));
  EXPECT_EQ(padded.description,
            "gpt 1 layers, 4 heads, 128 wide, context 128, vocab 257 (table padded to 300)");
}

TEST(GptModel, ChecksNameWhatToChange) {
  const DataShape data = tokens(128, 257);
  std::string msg = build_error({{"embed", "100"}, {"heads", "3"}}, data);
  EXPECT_NE(msg.find("--embed 100 must be divisible by --heads 3"), std::string::npos) << msg;
  msg = build_error({{"vocab-size", "200"}}, data);
  EXPECT_NE(msg.find("--vocab-size 200 is smaller than the data's vocabulary of 257"),
            std::string::npos)
      << msg;
  // A preset's value is not the user's: the message names the preset and what to give.
  msg = build_error({{"preset", "gpt2-small"}, {"context", "32"}}, tokens(32, 60000));
  EXPECT_NE(msg.find("--preset gpt2-small sets --vocab-size 50257, smaller than the data's "
                     "vocabulary of 60000 tokens: give --vocab-size 60000 or more"),
            std::string::npos)
      << msg;
  EXPECT_EQ(msg.find("leave it out"), std::string::npos) << msg;
  msg = build_error({}, DataShape{"images", {1, 28, 28}, 10});
  EXPECT_NE(msg.find("needs token data"), std::string::npos) << msg;
  msg = build_error({{"context", "64"}}, data);
  EXPECT_NE(msg.find("do not fit the context of 64"), std::string::npos) << msg;
  msg = build_error({{"layers", "0"}}, data);
  EXPECT_NE(msg.find("--layers"), std::string::npos) << msg;
}

// Blocks beyond memory: GptModel built them one by one until the kernel killed the process
// (2^62 layers of width 8). The check alone is called here: a model that passed it by mistake
// would take the test machine's memory.
TEST(GptModel, ParametersBeyondMemoryAreRefusedBeforeBuilding) {
  GptConfig c;
  c.layers = size_t(1) << 62;
  c.embed = 8;
  c.heads = 1;
  EXPECT_MENTIONS(error_of([&] { check_gpt_config(c); }),
                  "gpt: --layers 4611686018427387904 --embed 8 --context 128 and a table of 257 "
                  "rows make more than 2^64 parameters, whose float32 values alone exceed this "
                  "machine's");
  c.layers = 1000000000000;
  EXPECT_MENTIONS(error_of([&] { check_gpt_config(c); }), "make 872000000003096 parameters");
  c.layers = 4;
  EXPECT_NO_THROW(check_gpt_config(c));
}

TEST(GptModel, InitialisesAsGpt2) {
  GptConfig c;
  c.layers = 2, c.heads = 2, c.embed = 64, c.context = 32, c.vocab = 300;
  GptModel gpt(c, 5);
  EXPECT_NEAR(stddev(gpt.wte().value), 0.02, 0.001);
  EXPECT_NEAR(stddev(gpt.wpe().value), 0.02, 0.002);
  TransformerBlock& b = gpt.block(1);
  EXPECT_NEAR(stddev(b.attn().c_attn().weight().value), 0.02, 0.001);
  EXPECT_NEAR(stddev(b.mlp().c_fc().weight().value), 0.02, 0.001);
  // The residual projections: 0.02 / sqrt(2 * layers).
  EXPECT_NEAR(stddev(b.attn().c_proj().weight().value), 0.01, 0.001);
  EXPECT_NEAR(stddev(b.mlp().c_proj().weight().value), 0.01, 0.0005);
  for (float v : b.attn().c_attn().bias().value.to_vector()) EXPECT_EQ(v, 0.0f);
  for (float v : b.ln_2().weight().value.to_vector()) EXPECT_EQ(v, 1.0f);
  for (float v : gpt.ln_f().bias().value.to_vector()) EXPECT_EQ(v, 0.0f);
  // Per parameter from (seed, name): the same seed gives the same model, another seed not.
  GptModel same(c, 5), other(c, 6);
  EXPECT_EQ(max_rel_diff(same.block(1).mlp().c_fc().weight().value, b.mlp().c_fc().weight().value),
            0.0);
  EXPECT_GT(max_rel_diff(other.wte().value, gpt.wte().value), 0.0);
  // Two blocks' same-named parameters differ (the name is the stream).
  EXPECT_GT(max_rel_diff(gpt.block(0).mlp().c_fc().weight().value, b.mlp().c_fc().weight().value),
            0.0);
}

TEST(GptModel, RejectsInputsItCannotTake) {
  GptConfig c;
  c.layers = 1, c.heads = 1, c.embed = 8, c.context = 4, c.vocab = 5;
  GptModel gpt(c, 0);
  try {
    gpt.forward(Tensor::from_vector({1, 5}, std::vector<int32_t>{0, 1, 2, 3, 4}));
    FAIL() << "5 tokens into a context of 4";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit the context of 4"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(gpt.forward(Tensor::zeros({1, 3})), Error);  // float tokens
  try {
    gpt.forward(Tensor::from_vector({2, 3}, std::vector<int32_t>{0, 1, 2, 3, 9, 4}));
    FAIL() << "token 9 of a vocabulary of 5";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "wte: index 9 at position [1, 1] of the input int32[2, 3] is outside the "
                 "table's 5 rows [0, 5)");
  }
  EXPECT_THROW(GptModel(GptConfig{1, 3, 8, 4, 5}, 0), Error);  // 8 wide, 3 heads
}

// The steady-state step allocates no tensor memory: every activation and gradient buffer, down to
// the logits, is the one of the previous step while the batch shape stays the same.
TEST(GptModel, ReusesItsBuffersFromStepToStep) {
  GptConfig c;
  c.layers = 2, c.heads = 2, c.embed = 16, c.context = 8, c.vocab = 20;
  GptModel gpt(c, 0);
  const Tensor tok = Tensor::from_vector({2, 8}, std::vector<int32_t>(16, 3));
  const Tensor g = Tensor::zeros({16, 20});
  const float* logits = gpt.forward(tok).f32();
  gpt.backward(g);
  const float* mid = gpt.block(1).forward(Tensor::zeros({2, 8, 16})).f32();
  for (int step = 0; step < 3; ++step) {
    EXPECT_EQ(gpt.forward(tok).f32(), logits);
    gpt.backward(g);
    EXPECT_EQ(gpt.block(1).forward(Tensor::zeros({2, 8, 16})).f32(), mid);
  }
}

TEST(Embedding, NamesTheLayerIndexAndPosition) {
  Embedding emb("tok_emb", 4, 3, 0);
  EXPECT_EQ(emb.weight().name, "tok_emb.weight");
  EXPECT_THROW(emb.backward(Tensor::zeros({1, 3})), Error);  // before forward
  try {
    emb.forward(Tensor::from_vector({3}, std::vector<int32_t>{0, -1, 2}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "tok_emb: index -1 at position [1] of the input int32[3] is outside the "
                 "table's 4 rows [0, 4)");
  }
  // One past the last row: the boundary of the check.
  try {
    emb.forward(Tensor::from_vector({2, 2}, std::vector<int32_t>{0, 3, 2, 4}));
    FAIL() << "index 4 of a 4-row table accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "tok_emb: index 4 at position [1, 1] of the input int32[2, 2] is outside the "
                 "table's 4 rows [0, 4)");
  }
  EXPECT_THROW(emb.forward(Tensor::zeros({3})), Error);  // float indices
}
