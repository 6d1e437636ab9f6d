// Checkpoints: the container (header, section table, CRCs), the 'meta' section's JSON, and
// loading the tensors into a small mlp with momentum SGD, which checks every section's name
// and size against the model before it copies anything.
#include <memory>

#include "models/mlp.h"
#include "runtime/optim/sgd.h"
#include "runtime/train/checkpoint.h"
#include "tests/fuzz/fuzz.h"

namespace dp::fuzz {

namespace {

// The model of the seeds; a fuzzed checkpoint may hold anything else.
struct Model {
  std::unique_ptr<Sequential> mlp = make_mlp(4, {3}, 2, /*seed=*/1);
  SGD sgd{mlp->parameters(), 0.9f};
};

Model& model() {
  static Model m;
  return m;
}

}  // namespace

void fuzz_one(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("run.ckpt", data, size);
  try {
    CheckpointReader reader(path);
    reader.verify();
    read_checkpoint_meta(reader);
    load_checkpoint_tensors(reader, model().mlp->parameters(), model().mlp->buffers(),
                            &model().sgd);
  } catch (const Error& e) {
    // In the container a problem is at a byte; in the content, in a named section.
    require_file_and_position(e, path, "byte ", {"section", "param/", "optimizer"});
    throw;
  }
}

void write_seeds(const std::string& dir) {
  CheckpointMeta meta;
  meta.progress.step = 3;
  meta.progress.epoch = 1;
  meta.world_size = 2;
  meta.batch_size = 8;
  meta.steps_per_epoch = 10;
  meta.model = "mlp";
  meta.optimizer = model().sgd.kind();
  meta.settings = {{"--model", "mlp"}, {"--lr", "0.05"}};
  meta.buckets = {{3, 2}, {1, 0}};
  meta.dprun_version = "fuzz";
  write_checkpoint(dir + "/mlp.ckpt", meta, model().mlp->parameters(), model().mlp->buffers(),
                   model().sgd);
}

}  // namespace dp::fuzz
