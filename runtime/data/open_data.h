#pragma once
// The one place where a data specification (dprun's --data and --val-data) becomes
// datasets:
//   idx:DIR        MNIST-format {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] in DIR,
//                  images of one size, classes 0..the largest label of either split
//   cifar10:DIR    CIFAR-10 binary (data_batch_{1..5}.bin, test_batch.bin) in DIR or in
//                  DIR/cifar-10-batches-bin
//   synthetic[:N]  generated Gaussian clusters, N training samples (default 60000) of 784
//                  values in 10 classes, o.synthetic_test_size test samples of the same task
//   tokens:FILE    an llm.c token file, windows of o.context tokens; the test (validation)
//                  split comes from val_spec = tokens:FILE when given, else there is none
// idx, cifar10 and synthetic bring their own test split; val_spec must then be empty.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/data/dataset.h"

#include "samplers/distributed_sampler.h"

namespace dp {

constexpr size_t kSyntheticDim = 784;
constexpr int kSyntheticClasses = 10;
constexpr size_t kSyntheticDefaultSize = 60000;
// Samples are generated on the fly, but the sampler indexes each one on every rank
// (kMaxSamplerSize): beyond this, N is a typo rather than a data set.
constexpr size_t kSyntheticMaxSize = kMaxSamplerSize;

struct DataOptions {
  uint64_t seed = 0;                  // synthetic: class centres and samples
  size_t synthetic_test_size = 2000;  // synthetic: samples in the test split
  size_t context = 0;                 // tokens: the model's context length T; required (> 0)
};

struct DataSplits {
  std::unique_ptr<Dataset> train;
  // Normalised with the training split's statistics (images). Null only for tokens: without
  // a val_spec: training alone is legal, evaluation then has nothing to run on.
  std::unique_ptr<Dataset> test;
};

// Throws dp::Error naming the option (--data / --val-data) and the problem: an unknown
// prefix (listing the accepted forms), a missing path, a bad or too large N (synthetic:N,
// --synthetic-test-size), val_spec for data that is not tokens, a test split whose samples
// differ from the training split's (kind, shape, class count or vocabulary), and whatever
// the readers find wrong with the files.
DataSplits open_data(const std::string& spec, const std::string& val_spec, const DataOptions& o);

// The files a --data or --val-data `spec` reads, as the readers name them (those that do not
// exist too: an IDX file is read plain or gzipped): what no output of the run may overwrite.
// Empty for synthetic data and for a spec open_data refuses.
std::vector<std::string> data_files(const std::string& spec);

}  // namespace dp
