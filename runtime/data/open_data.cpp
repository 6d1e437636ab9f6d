#include "runtime/data/open_data.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "runtime/core/error.h"
#include "runtime/data/cifar10.h"
#include "runtime/data/idx.h"
#include "runtime/data/synthetic.h"
#include "runtime/data/token_dataset.h"

namespace dp {

namespace fs = std::filesystem;

namespace {

constexpr const char* kForms = "idx:DIR, cifar10:DIR, tokens:FILE or synthetic[:N]";

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

// The part after `prefix` (DIR or FILE, as `placeholder` says), which must not be empty.
std::string path_after(const std::string& spec, const std::string& prefix, const char* option,
                       const char* placeholder) {
  std::string rest = spec.substr(prefix.size());
  DP_CHECK(!rest.empty(), "{} {}: the path is missing (expected {}{})", option, spec, prefix,
           placeholder);
  return rest;
}

// Runs `load` (a reader of files); its errors name the file but not the option that chose it,
// and the launcher names a config file's line by the option a message names
// (launcher/config_origin.h): "--data idx:/nope: data directory ... does not exist".
template <typename Load>
auto naming_option(const char* option, const std::string& spec, Load load) -> decltype(load()) {
  try {
    return load();
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind(option, 0) == 0) throw;  // it names the option already
    fail("{} {}: {}", option, spec, what);
  }
}

// The model is built for the training split: a test split of another kind, sample shape or
// class count would be evaluated on misread samples or fail after training. The readers
// report what they can name better (IDX image sizes, token vocabularies); this is the net
// under every pair.
void check_test_matches_train(const char* option, const std::string& spec, const Dataset& train,
                              const Dataset& test) {
  DP_CHECK(test.kind() == train.kind() && test.sample_shape() == train.sample_shape() &&
               test.num_classes() == train.num_classes(),
           "{} {}: the test split ({} data, samples of shape {}, {} classes: {}) does not match "
           "the training split ({} data, samples of shape {}, {} classes: {})",
           option, spec, data_kind_name(test.kind()), shape_str(test.sample_shape()),
           test.num_classes(), test.describe(), data_kind_name(train.kind()),
           shape_str(train.sample_shape()), train.num_classes(), train.describe());
}

std::unique_ptr<TokenDataset> open_tokens(const std::string& spec, const char* option,
                                          const DataOptions& o) {
  const std::string file = path_after(spec, "tokens:", option, "FILE");
  DP_CHECK(o.context > 0, "{} {}: token data needs the model's context length (> 0)", option, spec);
  return naming_option(option, spec,
                       [&] { return std::make_unique<TokenDataset>(file, o.context); });
}

// N of synthetic:N, digits only: strtoull alone would accept " 5" and "+5" and wrap or
// saturate on overflow.
size_t parse_synthetic_size(const std::string& spec) {
  const std::string count = spec.substr(10);
  const bool digits = !count.empty() && std::all_of(count.begin(), count.end(),
                                                    [](char c) { return c >= '0' && c <= '9'; });
  DP_CHECK(digits, "--data {}: expected synthetic:N with a positive sample count (digits only)",
           spec);
  errno = 0;
  const unsigned long long v = std::strtoull(count.c_str(), nullptr, 10);
  DP_CHECK(v > 0, "--data {}: expected synthetic:N with a positive sample count", spec);
  DP_CHECK(errno != ERANGE && v <= kSyntheticMaxSize,
           "--data {}: at most {} synthetic samples (every rank keeps an index per sample)", spec,
           kSyntheticMaxSize);
  return static_cast<size_t>(v);
}

DataSplits open_synthetic(const std::string& spec, const DataOptions& o) {
  const size_t n = spec == "synthetic" ? kSyntheticDefaultSize : parse_synthetic_size(spec);
  DP_CHECK(o.synthetic_test_size > 0, "--synthetic-test-size must be at least 1 (got 0)");
  DP_CHECK(o.synthetic_test_size <= kSyntheticMaxSize,
           "--synthetic-test-size {}: at most {} synthetic samples (every rank keeps an index "
           "per sample)",
           o.synthetic_test_size, kSyntheticMaxSize);
  DataSplits d;
  d.train = std::make_unique<SyntheticDataset>(n, kSyntheticDim, kSyntheticClasses, o.seed);
  // Same class centres (same seed), samples drawn past the training set's indices.
  d.test = std::make_unique<SyntheticDataset>(o.synthetic_test_size, kSyntheticDim,
                                              kSyntheticClasses, o.seed, /*first_index=*/n);
  return d;
}

}  // namespace

DataSplits open_data(const std::string& spec, const std::string& val_spec, const DataOptions& o) {
  const bool tokens = starts_with(spec, "tokens:");
  DP_CHECK(val_spec.empty() || tokens,
           "--val-data {}: a separate validation set is only for --data tokens:FILE ({} brings "
           "its own test split)",
           val_spec, spec);
  DataSplits d;
  if (starts_with(spec, "idx:")) {
    const std::string dir = path_after(spec, "idx:", "--data", "DIR");
    naming_option("--data", spec, [&] {
      auto [train, test] = IdxDataset::load_train_test(dir);
      d.train = std::make_unique<IdxDataset>(std::move(train));
      d.test = std::make_unique<IdxDataset>(std::move(test));
    });
  } else if (starts_with(spec, "cifar10:")) {
    const std::string dir = path_after(spec, "cifar10:", "--data", "DIR");
    naming_option("--data", spec, [&] {
      auto train = std::make_unique<Cifar10Dataset>(Cifar10Dataset::load(dir, Cifar10Split::train));
      d.test = std::make_unique<Cifar10Dataset>(
          Cifar10Dataset::load(dir, Cifar10Split::test, train->normalization()));
      d.train = std::move(train);
    });
  } else if (spec == "synthetic" || starts_with(spec, "synthetic:")) {
    d = open_synthetic(spec, o);
  } else if (tokens) {
    auto train = open_tokens(spec, "--data", o);
    if (!val_spec.empty()) {
      DP_CHECK(starts_with(val_spec, "tokens:"), "--val-data {}: expected tokens:FILE", val_spec);
      auto val = open_tokens(val_spec, "--val-data", o);
      DP_CHECK(val->num_classes() == train->num_classes(),
               "the validation tokens '{}' have vocabulary size {} but the training tokens '{}' "
               "{}: they must come from the same tokenizer",
               val->file().path(), val->num_classes(), train->file().path(), train->num_classes());
      d.test = std::move(val);
    }
    d.train = std::move(train);
  } else {
    fail("--data '{}': unknown data source (expected {})", spec, kForms);
  }
  if (d.test)
    check_test_matches_train(val_spec.empty() ? "--data" : "--val-data",
                             val_spec.empty() ? spec : val_spec, *d.train, *d.test);
  return d;
}

std::vector<std::string> data_files(const std::string& spec) {
  std::vector<std::string> files;
  if (starts_with(spec, "tokens:") && spec.size() > 7) {
    files.push_back(spec.substr(7));
  } else if (starts_with(spec, "idx:") && spec.size() > 4) {
    for (const char* split : {"train", "t10k"}) {
      const auto [images, labels] = idx_split_files(spec.substr(4), split);
      for (const std::string& f : {images, labels}) {
        files.push_back(f);
        files.push_back(f + ".gz");
      }
    }
  } else if (starts_with(spec, "cifar10:") && spec.size() > 8) {
    const std::string dir = spec.substr(8);
    // Where resolve_cifar10_dir may find them: the directory or its cifar-10-batches-bin.
    for (const std::string& d : {dir, (fs::path(dir) / "cifar-10-batches-bin").string()}) {
      for (const Cifar10Split split : {Cifar10Split::train, Cifar10Split::test}) {
        for (std::string& f : cifar10_split_files(d, split)) files.push_back(std::move(f));
      }
    }
  }
  return files;
}

}  // namespace dp
