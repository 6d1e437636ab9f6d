#pragma once
// What `dprun --mode dp` prints: the header, a progress line per interval (with the time of
// replica 0's extra work: scatter, replicate, gather), a line per epoch and the summary with
// the mean time of every part of a step.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/device.h"
#include "runtime/train/metrics.h"

namespace dp {

struct DataParallelTimes;
struct EvalResult;
struct TrainSummary;

struct DataParallelHeader {
  size_t replicas = 0;
  std::vector<Device> devices;  // per replica
  std::vector<int> cpus;        // per replica: the CPU its thread is bound to, or -1
  std::string model;
  std::string data;
  size_t batch_size = 0;     // --batch-size
  size_t shard_samples = 0;  // a DDP rank's shard: the largest batch a replica gets
  size_t grad_accum = 1;
  size_t sequence_length = 0;
  uint64_t steps_per_epoch = 0;
  std::string optimizer;
  std::string schedule;
  float clip_grad_norm = 0;    // --clip-grad-norm (0: off)
  size_t replicate_bytes = 0;  // per replica and step
  size_t gather_bytes = 0;     // per step, from all other replicas
};

class DataParallelReport {
 public:
  explicit DataParallelReport(bool quiet) : quiet_(quiet) {}
  void header(const DataParallelHeader& h) const;
  void set_total(uint64_t total_steps, uint64_t interval, size_t tokens_per_sample);
  // Prints on the first step, every interval and the last step: means since the last line.
  void step(const StepMetrics& m, const DataParallelTimes& t, uint64_t epoch, double elapsed_s);
  void eval(uint64_t step, const EvalResult& e, bool next_token) const;
  void epoch_end(uint64_t epoch, uint64_t steps, uint64_t per_epoch, double train_loss,
                 const EvalResult* eval) const;
  // `mean_over`: which steps `mean` averages ("mean of steps 6-20": past the warm-up), unlike the
  // throughput, which counts every step.
  void summary(const TrainSummary& s, const DataParallelTimes& mean,
               const std::string& mean_over) const;

 private:
  bool quiet_;
  uint64_t total_ = 0;
  uint64_t interval_ = 100;
  size_t tokens_per_sample_ = 0;
  uint64_t n_ = 0;
  EpochLoss loss_;
  double samples_ = 0, seconds_ = 0, extra_ = 0, update_ = 0;
};

}  // namespace dp
