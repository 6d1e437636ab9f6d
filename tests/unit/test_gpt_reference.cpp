// A whole GPT-2 against PyTorch (tests/data/model_gpt_tiny.json, float64): built with the
// file's configuration and parameters, it must give the same loss, EVERY parameter's
// gradient (the tied wte: the sum of the head's and the embedding's parts) and, after one
// AdamW step with the file's settings, the same parameters.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "models/gpt.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/optim/adamw.h"
#include "tests/support/reference_data.h"

using namespace dp;
using test::expect_reference;
using test::load_reference;
using test::reference_tensor;

namespace {

struct Case {
  nlohmann::json c;
  Tensor inputs, targets;  // [B, T], and [B * T] for the loss
};

Case load_case() {
  Case k{load_reference("model_gpt_tiny.json"), {}, {}};
  const auto rows = k.c["tokens"].get<std::vector<std::vector<int32_t>>>();
  std::vector<int32_t> in, out;
  for (const auto& r : rows) {
    in.insert(in.end(), r.begin(), r.end() - 1);
    out.insert(out.end(), r.begin() + 1, r.end());
  }
  const int64_t B = int64_t(rows.size()), T = int64_t(rows[0].size()) - 1;
  k.inputs = Tensor::from_vector({B, T}, in);
  k.targets = Tensor::from_vector({B * T}, out);
  return k;
}

GptConfig config_of(const nlohmann::json& j) {
  GptConfig c;
  c.layers = j["layers"].get<size_t>();
  c.heads = j["heads"].get<size_t>();
  c.embed = j["embed"].get<size_t>();
  c.context = j["context"].get<size_t>();
  c.vocab = j["vocab"].get<size_t>();
  return c;
}

}  // namespace

TEST(GptReference, LossGradientsAndOneAdamWStepMatchPyTorch) {
  const Case k = load_case();
  const auto& c = k.c;
  ASSERT_EQ(c["config"]["tied_output_head"], "wte");
  ASSERT_EQ(c["config"]["gelu"], "tanh");
  GptModel gpt(config_of(c["config"]), 1);
  const std::vector<Parameter*> params = gpt.parameters();
  // Names and order exactly as the reference (GPT-2's).
  std::vector<std::string> names;
  names.reserve(params.size());
  for (Parameter* p : params) names.push_back(p->name);
  std::vector<std::string> want;
  for (auto it = c["params"].begin(); it != c["params"].end(); ++it) want.push_back(it.key());
  // nlohmann::json orders keys alphabetically: compare as sets here, order below.
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  std::sort(want.begin(), want.end());
  ASSERT_EQ(sorted, want);
  for (Parameter* p : params) p->value.copy_(reference_tensor(c["params"][p->name]));

  SoftmaxCrossEntropy loss;
  const float l = loss.forward(gpt.forward(k.inputs), k.targets);
  const double want_loss = c["loss"].get<double>();
  EXPECT_NEAR(l, want_loss, 1e-5 * want_loss);
  gpt.backward(loss.backward());

  double worst_grad = 0, worst_step = 0;
  std::string worst_grad_name, worst_step_name;
  for (Parameter* p : params) {
    const double e = expect_reference(p->grad, c["grads"][p->name], "grad " + p->name);
    if (e > worst_grad) worst_grad = e, worst_grad_name = p->name;
  }
  // One AdamW step, weight decay on every parameter. First from the reference gradients:
  // this pins the optimizer's settings and update rule to torch.optim.AdamW's, exactly.
  std::vector<Tensor> ours;
  ours.reserve(params.size());
  for (Parameter* p : params) ours.push_back(p->grad.clone());
  const auto& a = c["adamw"];
  const float lr = a["lr"].get<float>();
  auto step_from = [&](bool reference_grads) {
    for (Parameter* p : params) {
      p->value.copy_(reference_tensor(c["params"][p->name]));
      if (reference_grads) p->grad.copy_(reference_tensor(c["grads"][p->name]));
    }
    if (!reference_grads)
      for (size_t i = 0; i < params.size(); ++i) params[i]->grad.copy_(ours[i]);
    AdamW opt(params, a["betas"][0].get<float>(), a["betas"][1].get<float>(), a["eps"].get<float>(),
              a["weight_decay"].get<float>());
    opt.step(lr);
  };
  step_from(true);
  for (Parameter* p : params)
    expect_reference(p->value, c["params_after_adamw_step"][p->name],
                     "step from reference grads, " + p->name);

  // Then from the model's own gradients. Adam's first step moves each element by about
  // lr * g / (|g| + eps), which is ill-conditioned where the true gradient is 0: the key
  // biases (a constant added to a row of scores cancels in the softmax), where PyTorch's
  // float64 gives exactly 0 and float32 leaves ~1e-9 of rounding. Those elements, and only
  // those, may differ by up to lr; everything else must match.
  step_from(false);
  const int64_t C = int64_t(c["config"]["embed"].get<size_t>());
  size_t masked = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    Parameter* p = params[i];
    const std::vector<float> got = p->value.to_vector(), g = ours[i].to_vector();
    const std::vector<float> want =
        reference_tensor(c["params_after_adamw_step"][p->name]).to_vector();
    const std::vector<float> gref = reference_tensor(c["grads"][p->name]).to_vector();
    const bool is_attn_bias = p->name.find("attn.c_attn.bias") != std::string::npos;
    double err = 0;
    for (size_t j = 0; j < got.size(); ++j) {
      const double e = std::fabs(double(got[j]) - want[j]);
      if (gref[j] == 0.0f) {
        ++masked;
        EXPECT_TRUE(is_attn_bias && int64_t(j) >= C && int64_t(j) < 2 * C)
            << p->name << "[" << j << "]: a zero reference gradient outside the key biases";
        EXPECT_LE(std::fabs(g[j]), 1e-6) << p->name << "[" << j << "]";
        EXPECT_LE(e, 1.001 * lr) << p->name << "[" << j << "]";
        continue;
      }
      err = std::max(err, e / std::max(1.0, std::fabs(double(want[j]))));
    }
    EXPECT_LE(err, 1e-5) << "step from our gradients, " << p->name;
    worst_step = std::max(worst_step, err);
    if (err == worst_step) worst_step_name = p->name;
  }
  EXPECT_EQ(masked, size_t(C) * c["config"]["layers"].get<size_t>())
      << "one key bias per channel and layer";
  std::printf(
      "model_gpt_tiny: loss %.9f (want %.9f); worst gradient error %.2e (%s, relative "
      "to the tensor's largest value); worst parameter error after AdamW %.2e (%s)\n",
      l, want_loss, worst_grad, worst_grad_name.c_str(), worst_step, worst_step_name.c_str());
}

TEST(GptReference, ParameterOrderIsGpt2s) {
  const Case k = load_case();
  GptModel gpt(config_of(k.c["config"]), 1);
  std::vector<std::string> names;
  for (Parameter* p : gpt.parameters()) names.push_back(p->name);
  std::vector<std::string> want = {"wte", "wpe"};
  for (int i = 0; i < 2; ++i) {
    const std::string h = "h." + std::to_string(i) + ".";
    for (const char* s :
         {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
          "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight",
          "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"})
      want.push_back(h + s);
  }
  want.push_back("ln_f.weight");
  want.push_back("ln_f.bias");
  EXPECT_EQ(names, want);
  for (Parameter* p : gpt.parameters())
    EXPECT_EQ(p->value.shape(), reference_tensor(k.c["params"][p->name]).shape()) << p->name;
}
