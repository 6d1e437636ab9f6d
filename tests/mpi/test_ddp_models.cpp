// The DDP contract for the real models, under mpirun (1, 2, 4 ranks): N ranks x batch B
// train exactly as one rank with batch N x B, for the cnn (BatchNorm synchronised over the
// ranks, its buffers broadcast) and the gpt (its output head tied to the token embedding).
// Without --sync-batchnorm BatchNorm normalises per rank, so the contract cannot hold; what
// must hold then is that every replica (parameters AND buffers) stays rank 0's.
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/comm/mpi_process_group.h"
#include "runtime/core/rng.h"
#include "runtime/data/token_file.h"
#include "runtime/nn/parameter.h"
#include "runtime/optim/optimizer.h"
#include "runtime/train/trainer.h"
#include "tests/support/mpi_ranks.h"

using namespace dp;

namespace {

using test::rank;
using test::world;

// One directory for the test's data, named by rank 0 and written before anyone reads it.
std::string shared_dir() {
  static std::string dir = [] {
    char buf[256] = {};
    if (rank() == 0) {
      std::string tmpl = "/tmp/dprun-ddp-models.XXXXXX";
      std::snprintf(buf, sizeof(buf), "%s", mkdtemp(tmpl.data()));
    }
    MPI_Bcast(buf, sizeof(buf), MPI_CHAR, 0, MPI_COMM_WORLD);
    return std::string(buf);
  }();
  return dir;
}

// CIFAR-10 binary files of a learnable task: a class is a colour and a bright quadrant.
std::string cifar_dir() {
  std::string dir = shared_dir() + "/cifar";
  if (rank() == 0) {
    mkdir(dir.c_str(), 0755);
    Philox rng(11, 0);
    auto write = [&](const std::string& name, int records) {
      std::ofstream out(dir + "/" + name, std::ios::binary);
      std::vector<unsigned char> rec(3073);
      for (int r = 0; r < records; ++r) {
        const int label = int(rng.uniform() * 10) % 10;
        rec[0] = static_cast<unsigned char>(label);
        for (int c = 0; c < 3; ++c)
          for (int y = 0; y < 32; ++y)
            for (int x = 0; x < 32; ++x) {
              const bool bright = x / 16 == label % 2 && y / 16 == (label / 2) % 2;
              const float v = float((label * (40 + 30 * c)) % 256) + (bright ? 60.0f : 0.0f) +
                              80.0f * (rng.uniform() - 0.5f);
              rec[1 + size_t(c) * 1024 + size_t(y) * 32 + size_t(x)] =
                  static_cast<unsigned char>(std::min(255.0f, std::max(0.0f, v)));
            }
        out.write(reinterpret_cast<const char*>(rec.data()), 3073);
      }
    };
    for (int i = 1; i <= 5; ++i) write("data_batch_" + std::to_string(i) + ".bin", 40);
    write("test_batch.bin", 40);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return dir;
}

// A token file of a repeating, learnable sequence (vocabulary 23).
std::string token_file() {
  std::string path = shared_dir() + "/tokens.bin";
  if (rank() == 0) {
    std::vector<uint16_t> t(3000);
    for (size_t i = 0; i < t.size(); ++i) t[i] = uint16_t((i * 7 + i / 13) % 23);
    write_token_file(path, t.data(), t.size(), 23);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return path;
}

TrainConfig base_config() {
  TrainConfig c;
  c.max_steps = 6;
  c.epochs = 100;
  c.seed = 3;
  c.quiet = true;
  c.timeout_s = 60;
  c.lr_schedule = "constant";
  // Several buckets, so that their order and the tied weight's readiness matter.
  c.first_bucket_mb = 0.001;
  c.bucket_cap_mb = 0.01;
  return c;
}

TrainConfig cnn_config() {
  TrainConfig c = base_config();
  c.model = "cnn";
  c.model_options = {{"channels", "4,8"}, {"fc-hidden", "16"}};
  c.data = "cifar10:" + cifar_dir();
  c.optimizer = "sgd";
  c.lr = 0.05f;
  c.momentum = 0.9f;
  return c;
}

TrainConfig gpt_config() {
  TrainConfig c = base_config();
  c.model = "gpt";
  c.model_options = {{"layers", "2"}, {"heads", "2"}, {"embed", "16"}, {"context", "12"}};
  c.data = "tokens:" + token_file();
  // SGD: AdamW's first steps move a parameter by about lr * sign(gradient), so a gradient that
  // is zero in exact arithmetic (GPT's key biases) differs by a whole lr between two correct
  // summation orders; SGD keeps the comparison about the DDP machinery.
  c.optimizer = "sgd";
  c.lr = 0.1f;
  c.momentum = 0.9f;
  c.weight_decay = 0.01f;
  return c;
}

std::vector<float> flat(const Trainer& t, bool with_buffers) {
  std::vector<float> v;
  for (Parameter* p : t.parameters()) {
    auto x = p->value.to_vector();
    v.insert(v.end(), x.begin(), x.end());
  }
  if (with_buffers) {
    for (Buffer* b : t.buffers()) {
      auto x = b->value.to_vector();
      v.insert(v.end(), x.begin(), x.end());
    }
  }
  return v;
}

struct RunResult {
  std::vector<float> initial, final_;
  bool fused = false;  // the last optimizer step was one pass over the parameter arena
};

RunResult train(const TrainConfig& c, MPI_Comm comm) {
  int r = 0, n = 1;
  MPI_Comm_rank(comm, &r);
  MPI_Comm_size(comm, &n);
  MpiProcessGroup pg(comm);
  Trainer t(c, r, n);
  t.connect(pg);
  RunResult run;
  run.initial = flat(t, true);
  t.run();
  run.final_ = flat(t, true);
  run.fused = t.optimizer().fused();
  return run;
}

// allclose with rtol = tol, atol = tol * rms(b), and the run must have trained far beyond tol.
void expect_contract(const RunResult& dist, const RunResult& alone, double tol) {
  const auto& a = dist.final_;
  const auto& b = alone.final_;
  ASSERT_EQ(a.size(), b.size());
  double ss = 0, moved = 0, norm0 = 0;
  for (size_t i = 0; i < b.size(); ++i) ss += double(b[i]) * double(b[i]);
  const double rms = std::sqrt(ss / double(b.size()));
  size_t worst_i = 0;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double rel = std::fabs(double(a[i]) - double(b[i])) / (std::fabs(double(b[i])) + rms);
    if (rel > worst) worst = rel, worst_i = i;
    const double d = double(a[i]) - double(dist.initial[i]);
    moved += d * d;
    norm0 += double(dist.initial[i]) * double(dist.initial[i]);
  }
  EXPECT_LE(worst, tol) << "element " << worst_i << ": " << a[worst_i] << " vs " << b[worst_i];
  EXPECT_GE(std::sqrt(moved / norm0), 100 * tol) << "training barely moved the model";
}

void expect_same_as_rank0(const std::vector<float>& mine) {
  std::vector<float> root = mine;
  MPI_Bcast(root.data(), static_cast<int>(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  EXPECT_EQ(mine, root);
}

}  // namespace

TEST(DdpModels, CnnWithSyncBatchNormNRanksTimesBEqualsOneRankTimesNB) {
  TrainConfig dist = cnn_config();
  dist.sync_batchnorm = true;
  dist.batch_size = 16 / size_t(world());
  TrainConfig ref = cnn_config();
  ref.batch_size = 16;  // alone: per-rank BatchNorm over 16 is the global one
  const RunResult d = train(dist, MPI_COMM_WORLD);
  const RunResult a = train(ref, MPI_COMM_SELF);
  expect_contract(d, a, 2e-4);  // parameters AND running statistics
  expect_same_as_rank0(d.final_);
}

TEST(DdpModels, CnnReplicasAndBuffersStayRankZerosWithoutSync) {
  TrainConfig c = cnn_config();
  c.batch_size = 4;
  const RunResult d = train(c, MPI_COMM_WORLD);
  expect_same_as_rank0(d.final_);
}

TEST(DdpModels, GptWithTiedEmbeddingNRanksTimesBEqualsOneRankTimesNB) {
  TrainConfig dist = gpt_config();
  dist.batch_size = 8 / size_t(world());
  TrainConfig ref = gpt_config();
  ref.batch_size = 8;
  const RunResult d = train(dist, MPI_COMM_WORLD);
  const RunResult a = train(ref, MPI_COMM_SELF);
  expect_contract(d, a, 2e-4);
  expect_same_as_rank0(d.final_);
}

// The parameter arena (fused AdamW over one block, buckets as ranges of its gradient block,
// clipping in one pass) trains the GPT with its tied embedding exactly as separate tensors do.
TEST(DdpModels, GptOnTheParameterArenaIsFusedAndBitIdenticalToWithout) {
  TrainConfig c = gpt_config();
  c.batch_size = 8 / size_t(world());
  c.optimizer = "adamw";
  c.lr = 0.003f;
  c.clip_grad_norm = 0.5f;
  TrainConfig off = c;
  off.param_arena = false;
  const RunResult with = train(c, MPI_COMM_WORLD);
  const RunResult without = train(off, MPI_COMM_WORLD);
  EXPECT_TRUE(with.fused) << "the buckets stopped being views of the arena";
  EXPECT_FALSE(without.fused);
  ASSERT_EQ(with.final_.size(), without.final_.size());
  EXPECT_EQ(with.final_, without.final_);
  EXPECT_NE(with.final_, with.initial);
}

TEST(DdpModels, GptGradAccumEqualsTheLargerBatch) {
  TrainConfig accum = gpt_config();
  accum.batch_size = 4 / size_t(world());
  accum.grad_accum = 2;
  TrainConfig ref = gpt_config();
  ref.batch_size = accum.batch_size * 2 * size_t(world());
  const RunResult d = train(accum, MPI_COMM_WORLD);
  const RunResult a = train(ref, MPI_COMM_SELF);
  expect_contract(d, a, 2e-4);
}
