#pragma once
// What rank 0 prints: the header before training, a progress line per interval with an
// ETA, a line per epoch, and the final summary.
#include <string>
#include <vector>

#include "runtime/nn/parameter.h"
#include "runtime/train/metrics.h"

namespace dp {

struct EvalResult;
struct TrainSummary;

// The header's optimizer line: the optimizer, the schedule and gradient clipping when on.
std::string optimizer_text(const std::string& optimizer, const std::string& schedule,
                           float clip_grad_norm);

struct HeaderInfo {
  int world = 1;
  std::string backend;
  std::string algorithm;             // ProcessGroup::algorithm(): how all-reduces move, or empty
  std::vector<std::string> devices;  // per rank: "host device"
  std::string model;
  std::string data;
  size_t batch_size = 0;     // --batch-size
  size_t shard_samples = 0;  // samples of a rank's shard: the largest batch it can make
  size_t grad_accum = 1;
  std::string optimizer;
  std::string schedule;
  float clip_grad_norm = 0;  // --clip-grad-norm (0: off)
  std::string buckets;
  bool overlap = true;
  uint64_t steps_per_epoch = 0;
  size_t sequence_length = 0;  // tokens per sample of language models, else 0
};

// The samples in a rank's (or replica's) batch, min(--batch-size, its shard), as the header
// shows them: "64", or "500 (--batch-size 5000: a rank holds 500 samples)" where the loader
// makes each batch the whole shard, as PyTorch's DataLoader does with a batch_size above it.
size_t batch_in_use(size_t batch_size, size_t shard_samples);
std::string batch_text(size_t batch_size, size_t shard_samples, const char* holder);

std::string host_name();
// Peak resident set size of this process so far, MiB (getrusage).
double peak_rss_mib();
size_t count_params(const std::vector<Parameter*>& params);
std::string format_duration(double seconds);  // "1h02m03s", "2m05s", "7.3s"
// The line that ends an epoch: "epoch   1 done | train loss ...", or "epoch   1 ended after 2
// of 313 steps | ..." when the run stopped inside it (--steps), so it is not taken as whole.
void log_epoch_end(uint64_t epoch, uint64_t steps, uint64_t per_epoch, double train_loss,
                   const EvalResult* eval);
// The line of an evaluation at `step`: "step 10 | validation loss 4.6828 (perplexity 108.1)
// | accuracy 0.1592 (1024 targets)" for a language model, "test loss ..." otherwise.
void log_eval(uint64_t step, const EvalResult& e, bool next_token);
// The summary's evaluation line (both modes): validation loss, perplexity and next-token
// accuracy over tokens for a language model, test accuracy and loss over samples otherwise.
void log_eval_summary(const EvalResult& e);
void print_header_lines(const HeaderInfo& h);
// A progress line's loss: the mean over the interval's steps that updated, and how many were
// skipped (--on-nonfinite skip): "loss 2.3012 (1 skipped)", "loss n/a (2 skipped)".
std::string interval_loss_text(const EpochLoss& interval);
// Seconds left after `step` of `total` at the pace of this process's steps: those after
// `first_step` (a resumed run's elapsed time covers only the steps it ran itself).
double eta_seconds(uint64_t step, uint64_t first_step, uint64_t total, double elapsed_s);
void print_summary(const TrainSummary& s);
// The summary's train loss line (DDP's and --mode dp's).
void log_train_loss(const TrainSummary& s);

class Progress {
 public:
  // tokens_per_sample > 0 (language models): the rate is reported in tokens/s. first_step: the
  // step this process starts after (a resumed run's checkpoint step, else 0).
  Progress(uint64_t total_steps, uint64_t interval, bool enabled, size_t tokens_per_sample = 0,
           uint64_t first_step = 0);
  // Prints on the first step, every `interval` steps and on the last step; the numbers are
  // averages since the previous line (the loss over the steps that updated: m.skipped).
  // elapsed_s: since this process's first step.
  void step(const StepMetrics& m, uint64_t epoch, double elapsed_s);
  void epoch_end(uint64_t epoch, uint64_t steps, uint64_t per_epoch, double train_loss,
                 const EvalResult* eval);

 private:
  uint64_t total_;
  uint64_t interval_;
  bool enabled_;
  size_t tokens_per_sample_;
  uint64_t first_step_;
  uint64_t n_ = 0;
  EpochLoss loss_;
  double samples_ = 0, seconds_ = 0, comm_ = 0, exposed_ = 0;
};

}  // namespace dp
