// The parameter count a model is checked against the machine's memory with, before any
// layer is built: exact, and nullopt (not a wrapped-around small number) past 2^64.
#include <gtest/gtest.h>

#include <cstdint>

#include "models/cnn.h"
#include "models/gpt.h"
#include "models/mlp.h"
#include "models/parameter_count.h"
#include "runtime/core/error.h"

namespace dp {
namespace {

TEST(ParameterCount, SumsProductsExactly) {
  ParameterCount c;
  c.add({784, 1024});
  c.add(1024);
  c.add({1024, 10});
  c.add(10);
  EXPECT_EQ(c.value(), std::optional<size_t>(784 * 1024 + 1024 + 1024 * 10 + 10));
}

TEST(ParameterCount, OverflowIsRememberedNotWrapped) {
  EXPECT_EQ(checked_product({size_t(1) << 32, size_t(1) << 32}), std::nullopt);
  EXPECT_EQ(checked_product({size_t(1) << 31, size_t(1) << 32}), std::optional(size_t(1) << 63));
  ParameterCount c;
  c.add({size_t(1) << 40, size_t(1) << 30});  // 2^70: overflows
  c.add(5);                                   // a later small term does not bring it back
  EXPECT_EQ(c.value(), std::nullopt);
  ParameterCount sum;
  sum.add(SIZE_MAX);
  sum.add(1);  // the sum itself passes 2^64
  EXPECT_EQ(sum.value(), std::nullopt);
}

TEST(ParameterCount, TooManyForTheMachineIsRefusedNamingTheSizes) {
  EXPECT_NO_THROW(check_parameter_memory("mlp", "--hidden 8", size_t(1000)));
  try {
    check_parameter_memory("mlp", "--hidden 9", std::nullopt);
    FAIL() << "expected a dp::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("mlp: --hidden 9 make more than 2^64 parameters, whose float32 values "
                       "alone exceed this machine's"),
              std::string::npos)
        << msg;
  }
  EXPECT_THROW(check_parameter_memory("cnn", "x", SIZE_MAX / 2), Error);
}

}  // namespace
}  // namespace dp

namespace dp {
namespace {

size_t built_parameters(Module& m) {
  size_t n = 0;
  for (const Parameter* p : m.parameters()) n += p->value.numel();
  return n;
}

// The count the memory check uses is the model that is then built: a layer or a bias added to
// a model but not to its count would let a too-big model through.
TEST(ParameterCount, EachModelsCountIsWhatItBuilds) {
  auto mlp = make_mlp(20, {7, 5}, 3, 1);
  EXPECT_EQ(mlp_parameter_count(20, {7, 5}, 3), std::optional(built_parameters(*mlp)));
  for (const size_t k : {size_t(3), size_t(4)}) {
    CnnConfig c;
    c.channels = {4, 6};
    c.fc_hidden = {9};
    c.kernel_size = k;
    Cnn cnn({3, 12, 10}, 5, c, 1);
    EXPECT_EQ(cnn.planned_parameters(), built_parameters(cnn)) << "kernel " << k;
  }
  GptConfig g;
  g.layers = 2;
  g.heads = 2;
  g.embed = 8;
  g.context = 6;
  g.vocab = 11;
  g.padded_vocab = 16;
  GptModel gpt(g, 1);
  EXPECT_EQ(gpt_parameter_count(g), std::optional(built_parameters(gpt)));
}

}  // namespace
}  // namespace dp
