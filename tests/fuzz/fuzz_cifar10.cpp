// CIFAR-10 binary batches: Cifar10Dataset::load on a directory holding test_batch.bin.
#include "runtime/data/cifar10.h"
#include "tests/fuzz/fuzz.h"

namespace dp::fuzz {

void fuzz_one(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("test_batch.bin", data, size);
  try {
    Cifar10Dataset ds = Cifar10Dataset::load(scratch_dir(), Cifar10Split::test);
    std::vector<float> x(ds.sample_numel());
    ds.get(ds.size() - 1, x.data());
  } catch (const Error& e) {
    require_file_and_position(e, path, "byte ", {"cannot normalise"});
    throw;
  }
}

void write_seeds(const std::string& dir) {
  std::vector<uint8_t> px(2 * kCifarPixels);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 7 + i / 1024);
  write_cifar10_file(dir + "/two_records", {3, 9}, px);
}

}  // namespace dp::fuzz
