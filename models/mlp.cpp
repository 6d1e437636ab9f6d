#include "models/mlp.h"

#include <string>

#include "runtime/nn/linear.h"
#include "runtime/nn/relu.h"

namespace dp {

std::unique_ptr<Sequential> make_mlp(size_t in_features, const std::vector<size_t>& hidden,
                                     size_t num_classes, uint64_t seed) {
  DP_CHECK(in_features > 0, "mlp: in_features must be > 0");
  DP_CHECK(num_classes > 0, "mlp: num_classes must be > 0");
  for (size_t i = 0; i < hidden.size(); ++i)
    DP_CHECK(hidden[i] > 0, "mlp: hidden layer {} has size 0 (sizes must be > 0)", i + 1);
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
