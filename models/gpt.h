#pragma once
// GPT-2 (Radford et al. 2019; Karpathy's llm.c): token and position embeddings, pre-LayerNorm
// transformer blocks, a final LayerNorm, and an output head TIED to the token embedding
// (logits = x wte^T, no bias). Parameters under GPT-2's names, in GPT-2's order:
//   wte [Vp, C] (Vp >= V: GptConfig::padded_vocab), wpe [context, C],
//   h.{i}.ln_1.{weight,bias}, h.{i}.attn.c_attn.{weight,bias}, h.{i}.attn.c_proj.{weight,bias},
//   h.{i}.ln_2.{weight,bias}, h.{i}.mlp.c_fc.{weight,bias}, h.{i}.mlp.c_proj.{weight,bias},
//   ln_f.{weight,bias}
// wte is registered once (parameters() lists it once); its gradient sums the head's use and
// the embedding's, and it is reported ready once per backward, after the embedding's (the
// last) use. The blocks share one set of input-gradient buffers (block 0's backward scratch:
// Module::share_backward_scratch), since backward runs them one at a time.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "runtime/nn/embedding.h"
#include "runtime/nn/layernorm.h"
#include "runtime/nn/module.h"
#include "runtime/nn/transformer_block.h"

namespace dp {

struct GptConfig {
  size_t layers = 4;
  size_t heads = 4;
  size_t embed = 128;    // C
  size_t context = 128;  // the longest sequence (wpe's rows)
  size_t vocab = 257;    // V: the tokens the data can hold; the logits' width
  // Vp: wte's rows, >= V (0: V). As llm.c's padded vocabulary: rows V..Vp-1 are never looked
  // up and never scored (the head uses the first V rows), so padding changes no result.
  size_t padded_vocab = 0;
  size_t table_rows() const { return padded_vocab != 0 ? padded_vocab : vocab; }
};

// The model's parameter elements (wte once): (Vp + context) C + layers (12 C^2 + 13 C) + 2 C.
// nullopt when that does not fit a size_t.
std::optional<size_t> gpt_parameter_count(const GptConfig& c);
// Throws dp::Error naming what to change when GptModel cannot be built from `c` (a zero size,
// heads that do not divide the width, parameters beyond this machine's memory).
void check_gpt_config(const GptConfig& c);

class GptModel : public Module {
 public:
  // Initialised as GPT-2 / llm.c: weights N(0, 0.02^2), the residual projections
  // (attn.c_proj, mlp.c_proj) N(0, (0.02 / sqrt(2 * layers))^2), biases zero, LayerNorms
  // ones and zeros; each parameter from (seed, its name).
  GptModel(const GptConfig& config, uint64_t seed);

  // tokens: int32 [B, T] with 1 <= T <= context, each in [0, vocab). Returns the logits
  // [B * T, V] (2-D: row b * T + t predicts token t + 1 of sequence b), in the compute dtype.
  const Tensor& forward(const Tensor& tokens) override;
  // grad_output: dL/dlogits [B * T, V]. Returns an undefined tensor (tokens have no gradient).
  const Tensor& backward(const Tensor& grad_output) override;

  const GptConfig& config() const { return config_; }
  Parameter& wte() { return wte_.weight(); }
  Parameter& wpe() { return wpe_.weight(); }
  TransformerBlock& block(size_t i) { return *h_.at(i); }
  LayerNorm& ln_f() { return ln_f_; }
  // Elements over all parameters (wte counted once).
  size_t num_parameters();

 private:
  GptConfig config_;
  Embedding wte_;
  Embedding wpe_;
  std::vector<std::unique_ptr<TransformerBlock>> h_;
  LayerNorm ln_f_;
  Tensor positions_;  // int32 [B, T] of 0 .. T-1: wpe's indices
  Tensor x0_;         // token + position embeddings [B, T, C]
  Tensor final_;      // handle to ln_f's output
  Tensor logits_;     // [B * T, V]
  Tensor wte16_;      // bfloat16 compute: the head's copy of wte
  Tensor head_;       // the first V rows of wte (or of wte16_): the tied head
  Tensor grad16_, grad_final_;
  Tensor no_grad_;
};

// Continues `prompt` by `n_new` tokens sampled from the model, each from the logits of the
// last position given the last `context` tokens so far (the window slides: no KV cache).
// The model runs in evaluation mode (restored afterwards) on the device of its parameters.
// temperature > 0 divides the logits; 0 picks the most likely token. top_k > 0 samples
// among the k most likely only. The same seed gives the same tokens. Returns only the
// new tokens.
std::vector<int32_t> generate(GptModel& model, const std::vector<int32_t>& prompt, size_t n_new,
                              float temperature, size_t top_k, uint64_t seed);

}  // namespace dp
