// GPT's tied weight: wte is both the token embedding and the output head. It is listed once,
// its gradient sums both uses, and its on_grad_ready fires exactly once per backward, after
// BOTH contributions are in (the Reducer launches its bucket then: a hook that fired after the
// head's use alone would all-reduce half a gradient).
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "models/gpt.h"
#include "runtime/nn/cross_entropy.h"
#include "tests/support/reference_data.h"

using namespace dp;
using test::load_reference;
using test::reference_tensor;

TEST(GptTiedWeight, WteIsListedOnceAndReadyOnceWithBothUsesSummed) {
  // The PyTorch reference model: its wte gradient is the sum of the head's and the
  // embedding's parts, so the value at the moment the hook fires tells whether both were in.
  const auto c = load_reference("model_gpt_tiny.json");
  GptConfig cfg;
  cfg.layers = c["config"]["layers"].get<size_t>();
  cfg.heads = c["config"]["heads"].get<size_t>();
  cfg.embed = c["config"]["embed"].get<size_t>();
  cfg.context = c["config"]["context"].get<size_t>();
  cfg.vocab = c["config"]["vocab"].get<size_t>();
  GptModel gpt(cfg, 1);
  size_t listed = 0;
  for (Parameter* p : gpt.parameters()) {
    listed += p->name == "wte";
    p->value.copy_(reference_tensor(c["params"][p->name]));
  }
  EXPECT_EQ(listed, 1u);
  EXPECT_EQ(gpt.wte().uses(), 2);

  const auto rows = c["tokens"].get<std::vector<std::vector<int32_t>>>();
  std::vector<int32_t> in, out;
  for (const auto& r : rows) {
    in.insert(in.end(), r.begin(), r.end() - 1);
    out.insert(out.end(), r.begin() + 1, r.end());
  }
  const int64_t B = int64_t(rows.size()), T = int64_t(rows[0].size()) - 1;
  const Tensor inputs = Tensor::from_vector({B, T}, in);
  const Tensor targets = Tensor::from_vector({B * T}, out);

  std::map<std::string, int> fired;
  std::vector<std::string> order;
  Tensor wte_at_ready;
  for (Parameter* p : gpt.parameters())
    p->on_grad_ready = [&](Parameter& q) {
      ++fired[q.name];
      order.push_back(q.name);
      if (q.name == "wte") wte_at_ready = q.grad.clone();
    };
  const Tensor want = reference_tensor(c["grads"]["wte"]);
  SoftmaxCrossEntropy loss;
  for (int step = 0; step < 2; ++step) {
    SCOPED_TRACE(step);
    fired.clear();
    order.clear();
    for (Parameter* p : gpt.parameters()) p->grad.zero_();
    loss.forward(gpt.forward(inputs), targets);
    gpt.backward(loss.backward());
    for (Parameter* p : gpt.parameters()) EXPECT_EQ(fired[p->name], 1) << p->name;
    ASSERT_FALSE(order.empty());
    EXPECT_EQ(order.back(), "wte") << "the embedding, reached last, completes wte";
    ASSERT_TRUE(wte_at_ready.defined());
    EXPECT_LE(max_rel_diff(wte_at_ready, want), 1e-5) << "wte's gradient when it was reported";
    EXPECT_EQ(max_rel_diff(wte_at_ready, gpt.wte().grad), 0.0) << "added to after the report";
  }
}
