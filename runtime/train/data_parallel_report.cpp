#include "runtime/train/data_parallel_report.h"

#include <cmath>

#include <cblas.h>

#include <fmt/format.h>

#include "runtime/core/log.h"
#include "runtime/core/units.h"
#include "runtime/core/version.h"
#include "runtime/train/data_parallel.h"
#include "runtime/train/report.h"
#include "runtime/train/trainer.h"

namespace dp {

void DataParallelReport::header(const DataParallelHeader& h) const {
  if (quiet_) return;
  const bool gpu = !h.devices.empty() && h.devices[0].is_cuda();
  log::rank0("dprun {} | --mode dp: {} replica(s) in one process ({}), torch.nn.DataParallel",
             dprun_version(), h.replicas, gpu ? "one GPU each" : "one thread each");
  const std::string host = host_name();
  for (size_t r = 0; r < h.devices.size(); ++r) {
    std::string where =
        h.devices[r].is_cuda()
            ? fmt::format("{} {} ({})", host, h.devices[r].str(),
                          cuda_device_info(h.devices[r].index).name)
            : fmt::format("{} cpu (OpenBLAS {}, 1 thread)", host, openblas_get_corename());
    if (r < h.cpus.size() && h.cpus[r] >= 0) where += fmt::format(", bound to CPU {}", h.cpus[r]);
    log::rank0("  replica {}: {}{}", r, where,
               r == 0 ? " | main thread: scatter, replicate, gather, optimizer" : "");
  }
  log::rank0("model      {}", h.model);
  log::rank0("data       {}", h.data);
  const size_t global = batch_in_use(h.batch_size, h.shard_samples) * h.grad_accum * h.replicas;
  log::rank0(
      "batch      {} per replica x {} micro-batch(es) x {} replica(s) = {} global{}, {} "
      "steps/epoch (the samples of DDP's ranks)",
      batch_text(h.batch_size, h.shard_samples, "replica"), h.grad_accum, h.replicas, global,
      h.sequence_length ? fmt::format(" ({} tokens)", global * h.sequence_length) : "",
      h.steps_per_epoch);
  log::rank0("optimizer  {} (replica 0)",
             optimizer_text(h.optimizer, h.schedule, h.clip_grad_norm));
  log::rank0(
      "per step   replicate {:.2f} MB to each of {} replica(s), gather {:.2f} MB of gradients "
      "onto replica 0",
      bytes_to_mb(double(h.replicate_bytes)), h.replicas - 1, bytes_to_mb(double(h.gather_bytes)));
}

void DataParallelReport::set_total(uint64_t total_steps, uint64_t interval,
                                   size_t tokens_per_sample) {
  total_ = total_steps;
  interval_ = interval;
  tokens_per_sample_ = tokens_per_sample;
}

void DataParallelReport::step(const StepMetrics& m, const DataParallelTimes& t, uint64_t epoch,
                              double elapsed_s) {
  ++n_;
  loss_.add(m.loss, m.skipped);
  samples_ += double(m.samples);
  seconds_ += m.step_ms / 1000.0;
  extra_ += t.extra();
  update_ += t.update;
  if (quiet_ || !(m.step == 1 || m.step % interval_ == 0 || m.step == total_)) return;
  const double eta = eta_seconds(m.step, 0, total_, elapsed_s);
  const double rate = seconds_ > 0 ? samples_ / seconds_ : 0.0;
  const bool tokens = tokens_per_sample_ > 0;
  log::rank0(
      "epoch {:>3} | step {:>6}/{} | {} | lr {:.4g} | {:>9.0f} {}/s | replica 0's extra "
      "{:.2f} ms, update {:.2f} ms | ETA {}",
      epoch + 1, m.step, total_, interval_loss_text(loss_), m.lr,
      tokens ? rate * double(tokens_per_sample_) : rate, tokens ? "tokens" : "samples",
      extra_ / double(n_), update_ / double(n_), format_duration(eta));
  n_ = 0;
  loss_ = EpochLoss{};
  samples_ = seconds_ = extra_ = update_ = 0;
}

void DataParallelReport::eval(uint64_t step, const EvalResult& e, bool next_token) const {
  if (!quiet_) log_eval(step, e, next_token);
}

void DataParallelReport::epoch_end(uint64_t epoch, uint64_t steps, uint64_t per_epoch,
                                   double train_loss, const EvalResult* eval) const {
  if (!quiet_) log_epoch_end(epoch, steps, per_epoch, train_loss, eval);
}

void DataParallelReport::summary(const TrainSummary& s, const DataParallelTimes& t,
                                 const std::string& mean_over) const {
  if (quiet_) return;
  log::rank0("summary: {} steps, {} epoch(s) in {}", s.steps, s.epochs, format_duration(s.wall_s));
  log_train_loss(s);
  if (s.evaluated) log_eval_summary(s.eval);
  if (s.tokens_per_s > 0)
    log::rank0("  throughput      {:.0f} tokens/s ({:.1f} samples/s, global)", s.tokens_per_s,
               s.samples_per_s);
  else
    log::rank0("  throughput      {:.0f} samples/s (global)", s.samples_per_s);
  log::rank0(
      "  per step        {:.3f} ms ({}): data {:.3f}, scatter {:.3f}, replicate {:.3f}, parallel "
      "forward+backward {:.3f} (replica 0 {:.3f} + {:.3f}, slowest {:.3f}), gather {:.3f}, update "
      "{:.3f}",
      t.step, mean_over, t.data, t.scatter, t.replicate, t.parallel, t.forward, t.backward,
      t.slowest, t.gather, t.update);
  log::rank0("  replica 0 extra {:.3f} ms/step (scatter + replicate + gather, {:.1f}% of the step)",
             t.extra(), t.step > 0 ? 100.0 * t.extra() / t.step : 0.0);
  log::rank0("  peak memory     {:.0f} MiB resident (all replicas)", s.peak_rss_mib);
}

}  // namespace dp
