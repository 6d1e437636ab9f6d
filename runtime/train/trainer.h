#pragma once
// The training loop of one rank: data -> forward -> loss -> backward (gradients
// all-reduced by the Reducer while backward runs) -> optimizer, with evaluation, the
// progress report on rank 0, the JSON log, the trace and the parameter dump.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/comm/process_group.h"
#include "runtime/train/buffer_snapshot.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/checkpoint_lock.h"
#include "runtime/train/fault_injection.h"
#include "runtime/train/metrics.h"
#include "runtime/train/peer_watch.h"
#include "runtime/train/timeline.h"
#include "runtime/train/train_config.h"

namespace dp {

class BucketTuner;
class BufferSync;
class Dataset;
class DistributedSampler;
struct ModelEntry;
class DataLoader;
class Module;
class Optimizer;
class Reducer;
class ParameterArena;
class SoftmaxCrossEntropy;
class LrSchedule;
struct Buffer;
struct Parameter;

struct EvalResult {
  double loss = 0;      // mean per target (per token for language models), nats
  double accuracy = 0;  // fraction of targets predicted right (argmax)
  size_t samples = 0;
  bool tokens = false;  // a language model's: `samples` counts target tokens
};

struct TrainSummary {
  uint64_t steps = 0;
  uint64_t epochs = 0;
  // The last epoch's mean step loss; none when no epoch ended (preempted inside the first).
  // An epoch that --steps ended early (the run's last) is a mean over the steps it ran:
  // train_loss_steps of its train_loss_epoch_steps (both 0 when it ran whole).
  std::optional<double> train_loss;
  uint64_t train_loss_epoch = 0;  // 0-based
  uint64_t train_loss_steps = 0, train_loss_epoch_steps = 0;
  // At an epoch's end (`steps` of its `per_epoch` ran): where train_loss comes from.
  void epoch_ended(uint64_t epoch, uint64_t steps, uint64_t per_epoch) {
    const bool cut_short = steps < per_epoch;
    train_loss_epoch = epoch;
    train_loss_steps = cut_short ? steps : 0;
    train_loss_epoch_steps = cut_short ? per_epoch : 0;
  }
  // The JSON summary's train_loss_steps: null for a whole epoch.
  std::optional<uint64_t> partial_epoch_steps() const {
    if (train_loss_epoch_steps == 0) return std::nullopt;
    return train_loss_steps;
  }
  bool evaluated = false;
  EvalResult eval;
  double wall_s = 0;
  double samples_per_s = 0;  // global, over the training steps
  double tokens_per_s = 0;   // language models: samples/s x tokens per sample; else 0
  double comm_ms = 0;        // per step
  double exposed_comm_ms = 0;
  double overlap = 0;
  double peak_rss_mib = 0;     // this rank's peak resident memory (rank 0's in the log)
  uint64_t skipped_steps = 0;  // --on-nonfinite skip: steps without an update
  int preempted_by = 0;        // the signal that stopped the run early (0: it ran to the end)
  std::string checkpoint;      // the last checkpoint written, if any
};

class Trainer {
 public:
  // Local set-up, no communication: validates the config, loads the data, builds the
  // model and the optimizer. Every rank does it, so a bad input is found on every rank.
  Trainer(TrainConfig config, int rank, int world_size);
  ~Trainer();

  // Collective: replica check, parameters broadcast from rank 0, buckets.
  void connect(ProcessGroup& pg);
  // Collective: the whole run.
  TrainSummary run();
  // Writes out --log-json's buffered lines before the job is aborted (never throws).
  void flush_log() noexcept;
  EvalResult evaluate();

  const TrainConfig& config() const { return cfg_; }
  // The model's, listed once when it is built (listing walks the tree and checks names).
  const std::vector<Parameter*>& parameters() const { return params_; }
  const std::vector<Buffer*>& buffers() const { return buffers_; }
  Module& model() { return *model_; }
  const Reducer& reducer() const { return *reducer_; }
  const Optimizer& optimizer() const { return *optimizer_; }
  size_t steps_per_epoch() const;
  // The samples of a full batch: --batch-size, or a rank's whole shard where that is less.
  size_t rank_batch() const;
  // Where this run ends: --epochs' steps, or --steps when that comes first.
  uint64_t total_steps() const;
  // Samples on every rank, prints rank 0's, and lines the ranks up after it.
  void sample_and_print();

 private:
  void train_step(uint64_t epoch, StepMetrics& m);
  void evaluate_and_log(uint64_t epoch, TrainSummary& sum);
  // --eval-every and --sample-every: what is due after step_ (every N steps and after the
  // last), the evaluation unless it already ran at this step; the sample when `sample`.
  void periodic_outputs(uint64_t epoch, uint64_t total_steps, TrainSummary& sum, bool sample);
  void print_header();
  // The labels as the loss takes them: [B] as they are, [B, T] flattened to [B*T].
  const Tensor& loss_targets(const Tensor& y);
  std::chrono::milliseconds timeout() const;
  // What this rank can tell about its peers when a collective with them failed: which ranks
  // of its host are gone, which it cannot check (runtime/train/peer_watch.h).
  std::string peers_text() const;
  // Collective, before the Reducer (whose broadcast of rank 0's parameters then carries the
  // loaded values): rank 0 chooses, verifies, checks and loads the --resume checkpoint and
  // sends its 'meta' to the others; every rank learns where the run continues. Returns the
  // bucket assignment to restore (empty when it does not apply).
  std::vector<std::vector<size_t>> resume_from_checkpoint();
  // Which parameters each bucket holds, each bucket's sorted (their order inside is no change).
  using BucketMembers = std::vector<std::vector<size_t>>;
  static BucketMembers bucket_members(const Reducer& r);
  // Rank 0 says the Reducer's layout when the rebuild after the first step changed the
  // buckets' members from `before`.
  void say_rebuilt_buckets(const BucketMembers& before);
  // Collective: rank 0 writes DIR/step-N.ckpt; every rank learns whether it worked.
  void save_checkpoint(uint64_t epoch, uint64_t step_in_epoch, const EpochLoss& loss);
  TrainSummary run_eval_only();
  // `host` on the training device (itself on the CPU); `which` 0: inputs, 1: labels.
  const Tensor& on_device(const Tensor& host, size_t k, int which);

  TrainConfig cfg_;
  int rank_;
  int world_;
  ProcessGroup* pg_ = nullptr;
  std::unique_ptr<Dataset> train_set_;
  std::unique_ptr<Dataset> test_set_;
  std::unique_ptr<DistributedSampler> sampler_;
  std::unique_ptr<DataLoader> loader_;
  const ModelEntry* entry_ = nullptr;
  std::string model_description_;
  size_t sequence_length_ = 0;  // tokens per sample of next-token models, else 0
  std::unique_ptr<Module> model_;
  std::vector<Parameter*> params_;
  std::vector<Buffer*> buffers_;
  std::unique_ptr<ParameterArena> arena_;  // null with --no-param-arena
  std::unique_ptr<BufferSync> buffer_sync_;
  size_t sync_batchnorm_layers_ = 0;
  Tensor targets_;                         // loss_targets()' flattened view
  BufferSnapshot buffer_snapshot_;         // --on-nonfinite skip puts a skipped step's back
  bool warned_later_checkpoints_ = false;  // --keep-checkpoints' note, once per run
  std::unique_ptr<SoftmaxCrossEntropy> loss_fn_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<LrSchedule> schedule_;
  std::unique_ptr<Reducer> reducer_;
  std::unique_ptr<BucketTuner> tuner_;  // auto buckets, --profile-out
  Tensor loss_buf_;
  Tensor device_batch_[2][2];  // [inputs, labels][alternating]: reused device buffers
  uint64_t step_ = 0;
  uint64_t last_eval_step_ = UINT64_MAX;
  std::optional<double> last_epoch_loss_;  // the summary's train_loss, carried by checkpoints
  double wall_start_us_ = 0;  // now_us() when the training began, a resumed run's included
  bool resumed_ = false;
  bool resumed_auto_pending_ = false;  // the checkpoint was written before its auto buckets
  TrainingProgress start_;             // where this run continues (a checkpoint's progress)
  int stop_signal_ = 0;                // the ranks agreed to stop after this step (a signal)
  uint64_t skipped_steps_ = 0;         // --on-nonfinite skip
  uint64_t last_checkpoint_step_ = UINT64_MAX;
  std::string last_checkpoint_;
  std::unique_ptr<CheckpointDirLock> checkpoint_lock_;  // rank 0, while it writes checkpoints
  Timeline timeline_;
  FaultInjection fault_ = FaultInjection::from_env();
  // Every rank's host and pid (from the header's exchange) and, while training, the watch that
  // names a peer gone after a signal (runtime/train/peer_watch.h).
  std::vector<PeerProcess> peers_;
  std::unique_ptr<PeerWatch> watch_;
  JsonLog log_;
};

}  // namespace dp
