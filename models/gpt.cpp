#include "models/gpt.h"

#include <cmath>
#include <string>

#include <fmt/format.h>

#include "models/parameter_count.h"
#include "models/registry.h"
#include "runtime/nn/layer_io.h"
#include "runtime/ops/tensor_ops.h"

namespace dp {

namespace {

const GptConfig& checked(const GptConfig& c) {
  check_gpt_config(c);
  return c;
}

}  // namespace

void check_gpt_config(const GptConfig& c) {
  DP_CHECK(c.layers > 0 && c.heads > 0 && c.embed > 0 && c.context > 0 && c.vocab > 0,
           "gpt: layers, heads, embed, context and vocab must all be > 0, got {}, {}, {}, {}, {}",
           c.layers, c.heads, c.embed, c.context, c.vocab);
  DP_CHECK(c.padded_vocab == 0 || c.padded_vocab >= c.vocab,
           "gpt: the padded vocabulary {} is smaller than the vocabulary {}", c.padded_vocab,
           c.vocab);
  DP_CHECK(c.embed % c.heads == 0,
           "gpt: the embedding width {} must be divisible by the number of heads {} (each head "
           "gets embed / heads channels)",
           c.embed, c.heads);
  check_parameter_memory("gpt",
                         fmt::format("--layers {} --embed {} --context {} and a table of {} rows",
                                     c.layers, c.embed, c.context, c.table_rows()),
                         gpt_parameter_count(c));
}

std::optional<size_t> gpt_parameter_count(const GptConfig& c) {
  // (Vp + context) C + layers (12 C^2 + 13 C) + 2 C.
  const size_t C = c.embed;
  ParameterCount n;
  n.add({c.table_rows(), C});
  n.add({c.context, C});
  n.add({c.layers, 12, C, C});
  n.add({c.layers, 13, C});
  n.add({2, C});
  return n.value();
}

GptModel::GptModel(const GptConfig& config, uint64_t seed)
    : Module("gpt"),
      config_(checked(config)),
      wte_("wte", config.table_rows(), config.embed, seed, 0.02f, "wte"),
      wpe_("wpe", config.context, config.embed, seed, 0.02f, "wpe"),
      ln_f_("ln_f", config.embed) {
  // GPT-2 scales the init of the projections that feed the residual stream by
  // 1/sqrt(2 * layers): the stream sums two of them per block.
  const float proj_std = 0.02f / std::sqrt(2.0f * static_cast<float>(config.layers));
  register_module(wte_);
  register_module(wpe_);
  for (size_t i = 0; i < config.layers; ++i) {
    h_.push_back(std::make_unique<TransformerBlock>("h." + std::to_string(i), config.embed,
                                                    config.heads, seed, proj_std));
    register_module(*h_.back());
    // Backward runs the blocks one after another: one set of input-gradient buffers serves
    // them all (18 x batch x tokens x width floats a block, 226 MB at gpt2-small, batch 4:
    // sharing saves 11 of 12 sets, 2.3 GiB).
    if (i > 0) h_[0]->share_backward_scratch(*h_.back());
  }
  register_module(ln_f_);
  // The output head is wte's second use.
  wte_.weight().add_use();
}

size_t GptModel::num_parameters() {
  size_t n = 0;
  for (Parameter* p : parameters()) n += p->value.numel();
  return n;
}

const Tensor& GptModel::forward(const Tensor& tokens) {
  DP_CHECK(tokens.defined() && tokens.dtype() == DType::i32 && tokens.ndim() == 2,
           "{}: expected int32 tokens [batch, seq], got {}", name_,
           tokens.defined() ? tokens.str() : "an undefined tensor");
  const int64_t B = tokens.dim(0), T = tokens.dim(1);
  DP_CHECK(T >= 1 && static_cast<size_t>(T) <= config_.context,
           "{}: a sequence of {} tokens does not fit the context of {} (crop it to the last {})",
           name_, T, config_.context, config_.context);
  if (!positions_.defined() || positions_.shape() != tokens.shape() ||
      !(positions_.device() == tokens.device())) {
    std::vector<int32_t> pos(static_cast<size_t>(B * T));
    for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(i % size_t(T));
    positions_ = Tensor::from_vector(tokens.shape(), pos).to(tokens.device());
  }
  const Tensor& tok = wte_.forward(tokens);
  const Tensor& pos = wpe_.forward(positions_);
  ensure_like(x0_, tok);
  ops::add(tok, pos, x0_);
  const Tensor* h = &x0_;
  for (auto& block : h_) h = &block->forward(*h);
  final_ = ln_f_.forward(*h);
  // The tied head: logits = x wte^T, with wte in the compute dtype (re-cast every step: the
  // optimizer changed it).
  const int64_t V = static_cast<int64_t>(config_.vocab), C = static_cast<int64_t>(config_.embed);
  head_ = as_dtype(wte_.weight().value, compute_dtype_, wte16_).view(0, {V, C});
  ensure_shape(logits_, {B * T, V}, compute_dtype_, tokens.device());
  ops::matmul(final_, false, head_, true, logits_);
  return logits_;
}

const Tensor& GptModel::backward(const Tensor& grad_output) {
  DP_CHECK(head_.defined(), "{}: backward called before forward", name_);
  DP_CHECK(grad_output.defined() && grad_output.shape() == logits_.shape() &&
               (grad_output.dtype() == DType::f32 || grad_output.dtype() == DType::bf16),
           "{}: grad_output is {}, expected the shape of the last logits {}", name_,
           grad_output.defined() ? grad_output.str() : "undefined", logits_.str());
  Parameter& w = wte_.weight();
  DP_CHECK(w.grad.shape() == w.value.shape() && w.grad.device() == logits_.device(),
           "{}: wte's gradient is {} on {}, expected {} on {}", name_, w.grad.str(),
           w.grad.device().str(), w.value.str(), logits_.device().str());
  const Tensor& g = as_dtype(grad_output, compute_dtype_, grad16_);
  // The head's part of dL/dwte (its first V rows; padding rows get none); it is reported
  // ready only after the embedding adds its own.
  Tensor head_grad = w.grad.view(0, head_.shape());
  ops::matmul(g, true, final_, false, head_grad, 1.0f, 1.0f);
  w.grad_ready();
  ensure_like(grad_final_, final_);
  ops::matmul(g, false, head_, false, grad_final_);
  const Tensor* gh = &ln_f_.backward(grad_final_);
  for (size_t i = h_.size(); i-- > 0;) gh = &h_[i]->backward(*gh);
  // x0 = tok + pos: both embeddings get the same gradient. wte's use comes last.
  wpe_.backward(*gh);
  wte_.backward(*gh);
  return no_grad_;
}

}  // namespace dp

namespace dp {

namespace {

// wte's rows: the option's value, or the data's vocabulary when it is not given.
size_t table_rows(const ModelArgs& a) {
  const int64_t data_vocab = a.data().num_classes;
  DP_CHECK(data_vocab > 0, "--model gpt: the data reports no vocabulary size");
  if (a.get_string("vocab-size").empty()) return static_cast<size_t>(data_vocab);
  const int64_t v = a.get_int("vocab-size");
  if (a.from_preset("vocab-size"))
    DP_CHECK(v >= data_vocab,
             "--preset {} sets --vocab-size {}, smaller than the data's vocabulary of {} tokens: "
             "give --vocab-size {} or more",
             a.get_string("preset"), v, data_vocab, data_vocab);
  DP_CHECK(v >= data_vocab,
           "--vocab-size {} is smaller than the data's vocabulary of {} tokens (leave it out to "
           "use the data's)",
           v, data_vocab);
  return static_cast<size_t>(v);
}

}  // namespace

ModelEntry gpt_model_entry() {
  ModelEntry e;
  e.name = "gpt";
  e.summary =
      "GPT-2 language model (pre-LayerNorm transformer, output head tied to the token "
      "embedding; --layers --heads --embed --context, --preset gpt2-small)";
  e.data_kinds = {"tokens"};
  e.loss = LossKind::next_token;
  e.options = {
      {"layers", "4", "gpt: transformer blocks"},
      {"heads", "4", "gpt: attention heads per block (must divide --embed)"},
      {"embed", "128", "gpt: embedding width C"},
      {"context", "128", "gpt: the longest sequence (positions); also the training window"},
      {"vocab-size", "",
       "gpt: rows of the token embedding (default: the data's vocabulary; larger pads the table "
       "as llm.c's padded vocabulary: the logits, loss and sampling cover the data's tokens only)"},
      {"preset", "",
       "a named configuration of the model (gpt: gpt2-small, gpt2-medium, gpt-tiny, gpt-mini)"},
  };
  e.presets = {
      {"gpt2-small",
       {{"layers", "12"},
        {"heads", "12"},
        {"embed", "768"},
        {"context", "1024"},
        {"vocab-size", "50257"}}},
      {"gpt2-medium",
       {{"layers", "24"},
        {"heads", "16"},
        {"embed", "1024"},
        {"context", "1024"},
        {"vocab-size", "50257"}}},
      // Small enough to train on a laptop CPU in minutes (byte-level text).
      {"gpt-tiny", {{"layers", "2"}, {"heads", "2"}, {"embed", "64"}, {"context", "64"}}},
      {"gpt-mini", {{"layers", "6"}, {"heads", "6"}, {"embed", "192"}, {"context", "256"}}},
  };
  // AdamW as GPT-2 and llm.c train it: beta2 0.95, weight decay 0.1 on the 2-D tensors only
  // (not on biases and LayerNorm weights), gradients clipped at norm 1 (a warm-up depends on
  // the run's length: --warmup-steps).
  e.training_defaults = {{"optimizer", "adamw"},  {"lr", "0.001"},
                         {"weight-decay", "0.1"}, {"weight-decay-1d", "false"},
                         {"clip-grad-norm", "1"}, {"beta2", "0.95"}};
  e.sequence_length = [](const ModelArgs& a) { return a.get_int("context"); };
  e.build = [](const ModelArgs& a) {
    const DataShape& d = a.data();
    DP_CHECK(d.kind == "tokens",
             "--model gpt needs token data (a language-modelling data set), got {} data",
             d.kind.empty() ? "unnamed" : d.kind);
    GptConfig c;
    c.layers = static_cast<size_t>(a.get_int("layers"));
    c.heads = static_cast<size_t>(a.get_int("heads"));
    c.embed = static_cast<size_t>(a.get_int("embed"));
    c.context = static_cast<size_t>(a.get_int("context"));
    c.vocab = static_cast<size_t>(d.num_classes);
    c.padded_vocab = table_rows(a);
    DP_CHECK(c.embed % c.heads == 0, "--embed {} must be divisible by --heads {}", c.embed,
             c.heads);
    DP_CHECK(d.sample_shape.size() == 1 && d.sample_shape[0] >= 1 &&
                 static_cast<size_t>(d.sample_shape[0]) <= c.context,
             "--model gpt: the data's token windows {} do not fit the context of {}",
             shape_str(d.sample_shape), c.context);
    auto model = std::make_unique<GptModel>(c, a.seed());
    BuiltModel m;
    m.description = fmt::format("gpt {} layers, {} heads, {} wide, context {}, vocab {}", c.layers,
                                c.heads, c.embed, c.context, c.vocab);
    if (c.padded_vocab != c.vocab)
      m.description += fmt::format(" (table padded to {})", c.padded_vocab);
    m.module = std::move(model);
    return m;
  };
  e.generate = [](Module& model, const std::vector<int32_t>& prompt, size_t count,
                  float temperature, size_t top_k, uint64_t seed) {
    auto* gpt = dynamic_cast<GptModel*>(&model);
    DP_CHECK(gpt != nullptr, "internal: the gpt entry generates from a GptModel only");
    return generate(*gpt, prompt, count, temperature, top_k, seed);
  };
  return e;
}

}  // namespace dp
