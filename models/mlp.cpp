#include "models/mlp.h"

#include <algorithm>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "models/parameter_count.h"
#include "models/registry.h"

#include "runtime/nn/linear.h"
#include "runtime/nn/relu.h"

namespace dp {

namespace {

// "784 inputs, --hidden 1024,1024, 10 classes"; a long --hidden is summarised.
std::string layer_sizes(size_t in, const std::vector<size_t>& hidden, size_t classes) {
  std::string h = fmt::format("{}", fmt::join(hidden, ","));
  if (hidden.size() > 8) {
    const size_t widest = *std::max_element(hidden.begin(), hidden.end());
    h = fmt::format("of {} layers (the widest {})", hidden.size(), widest);
  }
  return fmt::format("{} inputs, --hidden {}, {} classes", in, h, classes);
}

}  // namespace

std::optional<size_t> mlp_parameter_count(size_t in_features, const std::vector<size_t>& hidden,
                                          size_t num_classes) {
  ParameterCount count;
  size_t in = in_features;
  for (const size_t h : hidden) {
    count.add({in, h});
    count.add(h);  // the bias
    in = h;
  }
  count.add({in, num_classes});
  count.add(num_classes);
  return count.value();
}

std::unique_ptr<Sequential> make_mlp(size_t in_features, const std::vector<size_t>& hidden,
                                     size_t num_classes, uint64_t seed) {
  DP_CHECK(in_features > 0, "mlp: in_features must be > 0");
  DP_CHECK(num_classes > 0, "mlp: num_classes must be > 0");
  for (size_t i = 0; i < hidden.size(); ++i)
    DP_CHECK(hidden[i] > 0, "mlp: hidden layer {} has size 0 (sizes must be > 0)", i + 1);
  check_parameter_memory("mlp", layer_sizes(in_features, hidden, num_classes),
                         mlp_parameter_count(in_features, hidden, num_classes));
  auto model = std::make_unique<Sequential>("mlp");
  size_t width = in_features;
  for (size_t i = 0; i < hidden.size(); ++i) {
    const std::string idx = std::to_string(i + 1);
    model->add(std::make_unique<Linear>("fc" + idx, width, hidden[i], seed));
    model->add(std::make_unique<ReLU>("relu" + idx));
    width = hidden[i];
  }
  model->add(
      std::make_unique<Linear>("fc" + std::to_string(hidden.size() + 1), width, num_classes, seed));
  return model;
}

}  // namespace dp

namespace dp {

ModelEntry mlp_model_entry() {
  ModelEntry e;
  e.name = "mlp";
  e.summary = "multi-layer perceptron on flattened samples (Linear + ReLU; --hidden)";
  e.data_kinds = {"vectors", "images"};
  e.loss = LossKind::classification;
  e.options = {{"hidden", "256,128", "MLP hidden layer sizes, comma-separated"}};
  e.build = [](const ModelArgs& a) {
    const std::vector<size_t> hidden = a.get_sizes("hidden");
    const size_t in = shape_numel(a.data().sample_shape);
    const size_t classes = static_cast<size_t>(a.data().num_classes);
    BuiltModel m;
    m.module = make_mlp(in, hidden, classes, a.seed());
    m.description = fmt::format("mlp {}-{}-{}", in, fmt::join(hidden, "-"), classes);
    return m;
  };
  return e;
}

}  // namespace dp
