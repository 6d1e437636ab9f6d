#pragma once
// dprun --mode dp: torch.nn.DataParallel in one process, the baseline DDP is measured against.
// N replicas of the model (threads on the CPU, cuda:0..N-1 on GPUs), and per optimizer step:
//
//   data       one loader reads the global batch (N x --batch-size samples: step s's samples
//              of DDP's N ranks, runtime/dp/global_batch_dataset.h)
//   scatter    chunk r of it is copied to replica r
//   replicate  replica 0's parameters and buffers are copied to replicas 1..N-1
//   parallel   every replica runs forward, loss and backward on its chunk, at once
//   gather     replica 0's gradients become the mean of all replicas' (and the losses' mean)
//   update     gradient norm / clipping and the optimizer step, on replica 0 only
//
// Scatter, replicate and gather are replica 0's (the main thread's) extra work, which DDP does
// not have or spreads over the ranks. The arithmetic is DDP's (the gather adds in rank order
// and scales by 1/N as dprun's all-reduce does), so `--mode dp --replicas N` ends with the
// parameters `mpirun -np N dprun` ends with, bit for bit (tests/e2e/test_data_parallel.sh).
//
// BatchNorm buffers: each replica's training forward moves its own running statistics; only
// replica 0's survive (the next replicate overwrites the others), exactly what DDP's
// broadcast_buffers does with rank 0's.
#include <memory>
#include <string>
#include <vector>

#include "runtime/train/buffer_snapshot.h"
#include "runtime/train/metrics.h"
#include "runtime/train/train_config.h"
#include "runtime/train/trainer.h"

namespace dp {

class Dataset;
class DataLoader;
class DistributedSampler;
class GlobalBatchDataset;
class GradientGather;
class LrSchedule;
class Optimizer;
class ReplicaThreads;
struct ModelEntry;
struct ReplicaState;

// Where one DataParallel step's time goes, ms. forward/backward are replica 0's own;
// parallel is the wall time of the parallel section (the slowest replica, plus the threads'
// wake-up and join).
struct DataParallelTimes {
  double step = 0;
  double data = 0;  // waiting for the loader's global batch
  double scatter = 0;
  double replicate = 0;
  double parallel = 0;
  double forward = 0;
  double backward = 0;
  double slowest = 0;  // the slowest replica's forward + backward
  double gather = 0;
  double update = 0;  // gradient norm (clipping) and the optimizer step
  // The work only replica 0's thread does, while the other replicas wait: scatter +
  // replicate + gather (the update runs on every DDP rank as well, so it is not counted).
  double extra() const { return scatter + replicate + gather; }
  void add(const DataParallelTimes& o);
  void scale(double s);
};

class DataParallelTrainer {
 public:
  // Local set-up: validates the config (refusing the DDP-only options by name), loads the
  // data, builds `replicas` copies of the model from the registry (replica r on
  // config.device for the CPU, cuda:(index + r) for a GPU) and the optimizer on replica 0.
  DataParallelTrainer(TrainConfig config, size_t replicas);
  ~DataParallelTrainer();
  DataParallelTrainer(const DataParallelTrainer&) = delete;
  DataParallelTrainer& operator=(const DataParallelTrainer&) = delete;

  TrainSummary run();
  // Every replica evaluates its exact shard of the test split (rank r's under DDP) with
  // replica 0's parameters and buffers, in evaluation mode; the sums are added in replica order.
  EvalResult evaluate();

  // Replica 0's: the model's result.
  std::vector<Parameter*> parameters() const;
  std::vector<Buffer*> buffers() const;
  size_t replicas() const { return replicas_.size(); }
  size_t steps_per_epoch() const { return steps_per_epoch_; }
  // The mean times of the steps so far (the first `warmup` steps left out when there are
  // more), for the summary and the benchmark.
  DataParallelTimes mean_times() const;

 private:
  struct Replica;
  void train_step(uint64_t epoch, StepMetrics& m, DataParallelTimes& t);
  void start_epoch(uint64_t epoch);
  void replicate_all(bool buffers_only);
  void evaluate_and_log(uint64_t epoch, TrainSummary& sum);
  void log_step(const StepMetrics& m, const DataParallelTimes& t);

  TrainConfig cfg_;
  const ModelEntry* entry_ = nullptr;
  std::string model_description_;
  size_t sequence_length_ = 0;
  std::unique_ptr<Dataset> train_set_;
  std::unique_ptr<Dataset> test_set_;
  // This epoch's global batch order, and the loader that reads it in order (its sampler:
  // one rank, unshuffled). Declared in this order so that the loader goes first.
  std::unique_ptr<GlobalBatchDataset> epoch_order_;
  std::unique_ptr<DistributedSampler> loader_sampler_;
  std::unique_ptr<DataLoader> loader_;
  size_t steps_per_epoch_ = 0;
  size_t shard_samples_ = 0;  // a DDP rank's sample count: the largest batch a replica gets
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::unique_ptr<ReplicaThreads> threads_;
  std::unique_ptr<GradientGather> gather_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<LrSchedule> schedule_;
  std::vector<float> losses_;       // per replica, of the current step
  BufferSnapshot buffer_snapshot_;  // replica 0's, put back when --on-nonfinite skip skips
  uint64_t step_ = 0;
  uint64_t last_eval_step_ = UINT64_MAX;
  uint64_t skipped_steps_ = 0;
  DataParallelTimes sum_times_, warm_times_;  // all steps; steps after the warm-up
  uint64_t warm_steps_ = 0;
  JsonLog log_;
};

// The replica count `--replicas 0` means: every visible GPU from config.device on, or the
// CPU's hardware threads (at least 1).
size_t default_replicas(const Device& device);

}  // namespace dp
