// Sampling from a GptModel (models/gpt.h): the Trainer prints such samples while a
// language model trains.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "models/gpt.h"
#include "runtime/core/rng.h"

namespace dp {

namespace {

// Puts a module in evaluation mode for a scope and restores its mode after, also when a
// forward throws.
class EvalScope {
 public:
  explicit EvalScope(Module& m) : m_(m), was_training_(m.training()) { m_.eval(); }
  ~EvalScope() { m_.train(was_training_); }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  Module& m_;
  bool was_training_;
};

// One token from the logits of one position. Candidates are ordered by logit, ties by token
// id, so that the choice depends on nothing but the logits and the random draw.
int32_t sample(const std::vector<float>& logits, float temperature, size_t top_k, Philox& rng,
               std::vector<int32_t>& order) {
  order.resize(logits.size());
  std::iota(order.begin(), order.end(), 0);
  auto better = [&](int32_t a, int32_t b) {
    return logits[size_t(a)] > logits[size_t(b)] ||
           (logits[size_t(a)] == logits[size_t(b)] && a < b);
  };
  if (temperature == 0.0f) return *std::min_element(order.begin(), order.end(), better);
  size_t k = order.size();
  if (top_k > 0 && top_k < k) {
    k = top_k;
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                      better);
  }
  double max_logit = -INFINITY;
  for (size_t i = 0; i < k; ++i) max_logit = std::max(max_logit, double(logits[size_t(order[i])]));
  std::vector<double> weight(k);
  double total = 0;
  for (size_t i = 0; i < k; ++i) {
    weight[i] = std::exp((double(logits[size_t(order[i])]) - max_logit) / temperature);
    total += weight[i];
  }
  const double u = double(rng.uniform()) * total;
  double cumulative = 0;
  for (size_t i = 0; i < k; ++i) {
    cumulative += weight[i];
    if (u < cumulative) return order[i];
  }
  return order[k - 1];  // u within rounding of the total
}

}  // namespace

std::vector<int32_t> generate(GptModel& model, const std::vector<int32_t>& prompt, size_t n_new,
                              float temperature, size_t top_k, uint64_t seed) {
  DP_CHECK(!prompt.empty(), "gpt generate: the prompt is empty (give at least one token)");
  DP_CHECK(std::isfinite(temperature) && temperature >= 0.0f,
           "gpt generate: the temperature must be >= 0 (0 picks the most likely token), got {}",
           temperature);
  const size_t context = model.config().context, vocab = model.config().vocab;
  const Device device = model.wte().value.device();
  EvalScope eval(model);
  // Its own stream of the seed, so that a sampling seed shared with other uses of Philox
  // (initialisation, shuffling) draws different numbers.
  Philox rng(seed, 0x67656e6572617465ull);  // "generate"
  std::vector<int32_t> seq = prompt, out, order;
  out.reserve(n_new);
  for (size_t step = 0; step < n_new; ++step) {
    const size_t t = std::min(seq.size(), context);
    const std::vector<int32_t> window(seq.end() - static_cast<std::ptrdiff_t>(t), seq.end());
    const Tensor tokens = Tensor::from_vector({1, int64_t(t)}, window).to(device);
    const Tensor& logits = model.forward(tokens);
    const std::vector<float> last = logits.view((t - 1) * vocab, {int64_t(vocab)}).to_vector();
    const int32_t next = sample(last, temperature, top_k, rng, order);
    seq.push_back(next);
    out.push_back(next);
  }
  return out;
}

}  // namespace dp
