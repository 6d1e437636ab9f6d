#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/nn/module.h"
#include "runtime/nn/sequential.h"

namespace dp {

struct CnnConfig {
  std::vector<size_t> channels = {32, 64};  // one conv block per entry
  std::vector<size_t> fc_hidden = {128};    // hidden Linear layers; empty: straight to the classes
  size_t kernel_size = 3;
};

// An image classifier: per entry of config.channels a block
//   convN (kernel_size, stride 1, padding (k-1)/2, no bias) -> bnN -> ReLU -> poolN (2x2)
// (the ReLU fused into bnN: BatchNorm2d with relu, one pass fewer each way)
// then flatten -> fc1 -> fc_relu1 -> ... -> fcM (logits). The convolutions have no bias:
// the BatchNorm after each subtracts the batch mean, which cancels a bias exactly (its
// gradient would be zero up to rounding: parameters and bucket bytes for nothing).
//
// Takes the data loader's flattened images x [B, C*H*W] (viewed as [B, C, H, W], no copy) or
// x [B, C, H, W]. Parameters "conv1.weight", "bn1.weight", "bn1.bias", ..., "fc1.weight",
// "fc1.bias", ...; buffers "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
// ...; each parameter initialised from (seed, its name) as PyTorch would.
class Cnn : public Module {
 public:
  // image_shape is {C, H, W}. Throws a dp::Error naming the sizes when the images are too
  // small for the blocks (each halves the height and width).
  Cnn(const Shape& image_shape, size_t num_classes, const CnnConfig& config, uint64_t seed);

  const Tensor& forward(const Tensor& x) override;
  // dx (when needs_input_grad(), off by default: the input is data) in the input's shape.
  const Tensor& backward(const Tensor& grad_output) override;

  Sequential& layers() { return layers_; }
  // The feature count flatten hands to fc1: last channels x the final height x width.
  int64_t flat_features() const { return flat_features_; }
  // The parameter elements counted before any layer was built (the memory check's figure).
  size_t planned_parameters() const { return planned_parameters_; }

 private:
  Shape image_shape_;
  Shape input_shape_;  // of the last forward
  int64_t flat_features_ = 0;
  size_t planned_parameters_ = 0;
  Sequential layers_;
  Tensor images_, grad_input_, no_grad_;
};

std::unique_ptr<Cnn> make_cnn(const Shape& image_shape, size_t num_classes, const CnnConfig& config,
                              uint64_t seed);

}  // namespace dp
