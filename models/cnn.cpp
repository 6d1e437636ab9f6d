#include "models/cnn.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "models/parameter_count.h"
#include "models/registry.h"
#include "runtime/nn/batchnorm2d.h"
#include "runtime/nn/conv2d.h"
#include "runtime/nn/flatten.h"
#include "runtime/nn/linear.h"
#include "runtime/nn/maxpool2d.h"
#include "runtime/nn/relu.h"

namespace dp {

namespace {

constexpr size_t kPool = 2;

std::string image_str(const Shape& s) {
  return fmt::format("{}", fmt::join(s, "x"));
}

}  // namespace

Cnn::Cnn(const Shape& image_shape, size_t num_classes, const CnnConfig& config, uint64_t seed)
    : Module("cnn"), image_shape_(image_shape), layers_("cnn.layers") {
  DP_CHECK(
      image_shape.size() == 3 && image_shape[0] > 0 && image_shape[1] > 0 && image_shape[2] > 0,
      "cnn: expected images of shape {{channels, height, width}}, got {{{}}}",
      fmt::join(image_shape, ", "));
  DP_CHECK(num_classes > 0, "cnn: num_classes must be > 0");
  DP_CHECK(config.kernel_size > 0, "cnn: --kernel-size must be > 0");
  for (size_t i = 0; i < config.channels.size(); ++i)
    DP_CHECK(config.channels[i] > 0, "cnn: conv block {} has 0 channels (sizes must be > 0)",
             i + 1);
  for (size_t i = 0; i < config.fc_hidden.size(); ++i)
    DP_CHECK(config.fc_hidden[i] > 0, "cnn: hidden layer fc{} has size 0 (sizes must be > 0)",
             i + 1);
  needs_input_grad_ = false;  // a model's input is data

  const size_t k = config.kernel_size, pad = (k - 1) / 2;
  // Sizes and the parameter count first: a too-small image is reported in the model's terms
  // rather than by the layer that would fail at the first forward, and nothing is allocated
  // for a model the machine cannot hold.
  ParameterCount count;
  size_t ch = static_cast<size_t>(image_shape[0]);
  int64_t h = image_shape[1], w = image_shape[2];
  for (size_t i = 0; i < config.channels.size(); ++i) {
    // Padding (k-1)/2 keeps the size for an odd k and loses one for an even k (h + 2 pad - k
    // + 1, without its overflow for huge k).
    const int64_t shrink = int64_t((k - 1) % 2), hc = h - shrink, wc = w - shrink;
    DP_CHECK(hc >= int64_t(kPool) && wc >= int64_t(kPool),
             "--model cnn: {} images are too small for {} conv blocks: block {} gets {}x{}, its "
             "{}x{} convolution makes {}x{}, and the {}x{} pooling needs at least {}x{} (every "
             "block halves the height and width: use fewer --channels or larger images)",
             image_str(image_shape), config.channels.size(), i + 1, h, w, k, k, hc, wc, kPool,
             kPool, kPool, kPool);
    // A kernel of more than 2 x min(h, w) - 1 has rows or columns that only ever multiply the
    // padding: weights that cannot learn, and sizes the check above passed however large
    // (2001 asked for 49 GB; 10^14 overflowed a shape).
    const int64_t k_max = 2 * std::min(h, w) - 1;
    DP_CHECK(k <= size_t(k_max),
             "--model cnn: --kernel-size {} is too large for conv block {}, whose input is {}x{} "
             "(at most {}: a larger kernel has weights that only ever meet the zero padding)",
             k, i + 1, h, w, k_max);
    count.add({ch, config.channels[i], k, k});  // conv (no bias)
    count.add({2, config.channels[i]});         // bn's weight and bias
    ch = config.channels[i];
    h = hc / int64_t(kPool);
    w = wc / int64_t(kPool);
  }
  const std::optional<size_t> flat_or = checked_product({ch, size_t(h), size_t(w)});
  if (!flat_or) count.add(std::nullopt);
  const size_t flat = flat_or.value_or(0);
  size_t in = flat;
  for (const size_t f : config.fc_hidden) {
    count.add({in, f});
    count.add(f);
    in = f;
  }
  count.add({in, num_classes});
  count.add(num_classes);
  check_parameter_memory(
      "cnn",
      fmt::format("{} images, --channels {}, --kernel-size {}, --fc-hidden {}",
                  image_str(image_shape), fmt::join(config.channels, ","), k,
                  config.fc_hidden.empty() ? std::string("none")
                                           : fmt::format("{}", fmt::join(config.fc_hidden, ","))),
      count.value());
  planned_parameters_ = *count.value();
  ch = static_cast<size_t>(image_shape[0]);
  for (size_t i = 0; i < config.channels.size(); ++i) {
    const std::string n = std::to_string(i + 1);
    layers_.add(std::make_unique<Conv2d>("conv" + n, ch, config.channels[i], k, 1, pad, seed,
                                         /*bias=*/false));
    // The block's ReLU runs inside bnN's passes (BatchNorm2d's relu; no parameters or state
    // of its own, so the layout is that of a separate reluN).
    layers_.add(std::make_unique<BatchNorm2d>("bn" + n, config.channels[i], 1e-5f, 0.1f,
                                              /*relu=*/true));
    layers_.add(std::make_unique<MaxPool2d>("pool" + n, kPool));
    ch = config.channels[i];
  }
  layers_.add(std::make_unique<Flatten>("flatten"));
  flat_features_ = int64_t(flat);
  size_t width = flat;
  for (size_t i = 0; i < config.fc_hidden.size(); ++i) {
    const std::string n = std::to_string(i + 1);
    layers_.add(std::make_unique<Linear>("fc" + n, width, config.fc_hidden[i], seed));
    layers_.add(std::make_unique<ReLU>("fc_relu" + n));
    width = config.fc_hidden[i];
  }
  layers_.add(std::make_unique<Linear>("fc" + std::to_string(config.fc_hidden.size() + 1), width,
                                       num_classes, seed));
  register_module(layers_);
}

const Tensor& Cnn::forward(const Tensor& x) {
  const int64_t flat = image_shape_[0] * image_shape_[1] * image_shape_[2];
  const bool flat_ok = x.defined() && x.ndim() == 2 && x.dim(1) == flat;
  const bool nchw_ok = x.defined() && x.ndim() == 4 && x.dim(1) == image_shape_[0] &&
                       x.dim(2) == image_shape_[1] && x.dim(3) == image_shape_[2];
  DP_CHECK(flat_ok || nchw_ok, "{}: expected images [batch, {}] or [batch, {}], got {}", name_,
           flat, fmt::join(image_shape_, ", "), x.defined() ? x.str() : "an undefined tensor");
  input_shape_ = x.shape();
  images_ = flat_ok ? x.reshape({x.dim(0), image_shape_[0], image_shape_[1], image_shape_[2]}) : x;
  layers_.set_needs_input_grad(needs_input_grad_);
  return layers_.forward(images_);
}

const Tensor& Cnn::backward(const Tensor& grad_output) {
  DP_CHECK(images_.defined(), "{}: backward called before forward", name_);
  const Tensor& dx = layers_.backward(grad_output);
  if (!needs_input_grad_ || !dx.defined()) return no_grad_;
  grad_input_ = dx.reshape(input_shape_);
  return grad_input_;
}

std::unique_ptr<Cnn> make_cnn(const Shape& image_shape, size_t num_classes, const CnnConfig& config,
                              uint64_t seed) {
  return std::make_unique<Cnn>(image_shape, num_classes, config, seed);
}

ModelEntry cnn_model_entry() {
  ModelEntry e;
  e.name = "cnn";
  e.summary =
      "convolutional network on images: blocks of Conv2d-BatchNorm2d-ReLU-MaxPool2d, then "
      "Linear layers (--channels, --fc-hidden, --kernel-size)";
  e.data_kinds = {"images"};
  e.loss = LossKind::classification;
  e.options = {
      {"channels", "32,64",
       "cnn: output channels of each conv block (conv, BatchNorm, ReLU, 2x2 max pool), "
       "comma-separated"},
      {"fc-hidden", "128",
       "cnn: hidden Linear layer sizes after the conv blocks, comma-separated ('none': the "
       "flattened features go straight to the classes)"},
      {"kernel-size", "3",
       "cnn: convolution kernel size (padding (k-1)/2: odd sizes keep the "
       "height and width; at most 2 x each block's input height and width - 1)"},
  };
  // SGD with Nesterov momentum, a little weight decay and batches of 32 per rank, the usual
  // recipe for a small CNN: 0.92+ on Fashion-MNIST in 5 epochs with 4 ranks (global batch
  // 128; with 64 per rank it stays near 0.917).
  e.training_defaults = {
      {"momentum", "0.9"}, {"nesterov", "true"}, {"weight-decay", "5e-4"}, {"batch-size", "32"}};
  e.build = [](const ModelArgs& a) {
    const DataShape& d = a.data();
    DP_CHECK(d.kind == "images" && d.sample_shape.size() == 3,
             "--model cnn needs image data (samples of shape channels x height x width), but "
             "the data gives {} samples of shape [{}]; use --model mlp for flat vectors",
             d.kind.empty() ? "unknown" : d.kind, fmt::join(d.sample_shape, ", "));
    DP_CHECK(d.num_classes > 0, "--model cnn: the data has no classes");
    CnnConfig c;
    c.channels = a.get_sizes("channels");
    const std::string fc = a.get_string("fc-hidden");
    c.fc_hidden = fc.empty() || fc == "none" ? std::vector<size_t>{} : a.get_sizes("fc-hidden");
    c.kernel_size = static_cast<size_t>(a.get_int("kernel-size"));
    BuiltModel m;
    m.module = make_cnn(d.sample_shape, static_cast<size_t>(d.num_classes), c, a.seed());
    m.description = fmt::format(
        "cnn {} conv {} k{}, fc {}, {} classes", image_str(d.sample_shape),
        fmt::join(c.channels, "-"), c.kernel_size,
        c.fc_hidden.empty() ? std::string("none") : fmt::format("{}", fmt::join(c.fc_hidden, "-")),
        d.num_classes);
    return m;
  };
  return e;
}

}  // namespace dp
