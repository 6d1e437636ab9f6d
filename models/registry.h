#pragma once
// The models dprun can train, by name. Each model describes itself (a summary, the data it
// fits, its loss, its options with defaults and presets) and builds itself from option
// values and the data's shape; the Trainer and the launcher know no model by name.
//
// Options are strings on the way in (the command line, a config file) and typed on the way
// out (ModelArgs::get_*), with errors that name the option. An option may be declared by
// several models (e.g. a width) as long as the declarations agree on its meaning.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/nn/module.h"

namespace dp {

// The loss a model's output goes into. classification: logits [B, C] against labels [B].
// next_token: logits [B*T, V] (the model flattens) against the next tokens [B, T].
enum class LossKind { classification, next_token };

// What the model is given to fit: the data's kind ("images" NCHW without the batch,
// "vectors", or "tokens"), one sample's shape, and the number of classes (the vocabulary
// size for tokens).
struct DataShape {
  std::string kind;
  Shape sample_shape;
  int64_t num_classes = 0;
};

struct ModelOption {
  std::string name;           // without dashes: "hidden" is --hidden
  std::string default_value;  // as text; "" for none
  std::string help;
};

// Values the user gave, by option name (defaults are NOT in here: the model's presets may
// supply a value first).
using ModelOptionValues = std::map<std::string, std::string>;

class ModelArgs {
 public:
  ModelArgs(const std::vector<ModelOption>& spec, ModelOptionValues given, ModelOptionValues preset,
            DataShape data, uint64_t seed);

  // The option's value: given by the user, else from the preset, else the default. Parse
  // errors name the option ("--layers: expected a positive integer, got 'x'").
  std::string get_string(const std::string& name) const;
  int64_t get_int(const std::string& name, int64_t min = 1) const;
  double get_float(const std::string& name) const;
  std::vector<size_t> get_sizes(const std::string& name) const;  // "256,128"
  // True when the value comes from the preset, not the user: errors about it then name the
  // preset, as the user never gave the option.
  bool from_preset(const std::string& name) const;

  const DataShape& data() const { return data_; }
  uint64_t seed() const { return seed_; }

 private:
  const ModelOption& find(const std::string& name) const;
  std::vector<ModelOption> spec_;
  ModelOptionValues given_;
  ModelOptionValues preset_;
  DataShape data_;
  uint64_t seed_;
};

struct BuiltModel {
  std::unique_ptr<Module> module;
  std::string description;  // one line for the header: "gpt 4 layers, 4 heads, 128 wide ..."
};

struct ModelEntry {
  std::string name;
  std::string summary;                  // one line for --help and --model lists
  std::vector<std::string> data_kinds;  // the DataShape kinds it accepts
  LossKind loss = LossKind::classification;
  std::vector<ModelOption> options;
  // Training options that suit this model better than dprun's general defaults (an SGD
  // momentum for a CNN, AdamW for a transformer), by long option name without dashes: used
  // where the user gave no value, shown by --model list and in the run's header.
  std::map<std::string, std::string> training_defaults;
  // Named sets of option values (--preset NAME), e.g. gpt2-small. Empty when none.
  std::map<std::string, ModelOptionValues> presets;
  // The length of the token windows the data must cut, for next-token models (the
  // sequence length T); null for others. Called before the data is opened.
  std::function<int64_t(const ModelArgs&)> sequence_length;
  // Builds the model for `args.data()`; throws dp::Error when the data does not fit
  // (naming both).
  std::function<BuiltModel(const ModelArgs&)> build;
  // Next-token models: continues `prompt` by `count` tokens sampled from the model (in
  // evaluation mode; the caller restores training mode) with this temperature, from the
  // top_k most likely tokens (0: all), deterministically for `seed`. Null for others.
  std::function<std::vector<int32_t>(Module& model, const std::vector<int32_t>& prompt,
                                     size_t count, float temperature, size_t top_k, uint64_t seed)>
      generate;
};

// Every model, in the order --help lists them.
const std::vector<ModelEntry>& model_registry();
// The entry called `name`; a dp::Error listing the known models otherwise.
const ModelEntry& find_model(const std::string& name);
// Every option of every model, once per name (for the launcher's option parser).
std::vector<ModelOption> all_model_options();

// ModelArgs for `entry` from the user's values: applies `--preset` (itself an option of
// models with presets) and rejects options the model does not have (naming the model).
ModelArgs make_model_args(const ModelEntry& entry, const ModelOptionValues& given,
                          const DataShape& data, uint64_t seed);

// The built-in models (defined next to each model: models/mlp.cpp, ...).
ModelEntry mlp_model_entry();
ModelEntry cnn_model_entry();
ModelEntry gpt_model_entry();

}  // namespace dp
