#include "runtime/train/report.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>

#include <fmt/format.h>

#include "runtime/core/log.h"
#include "runtime/core/version.h"
#include "runtime/train/trainer.h"

namespace dp {

std::string optimizer_text(const std::string& optimizer, const std::string& schedule,
                           float clip_grad_norm) {
  return fmt::format("{}, lr {}{}", optimizer, schedule,
                     clip_grad_norm > 0
                         ? fmt::format(", gradients clipped at total norm {}", clip_grad_norm)
                         : std::string());
}

std::string host_name() {
  char host[HOST_NAME_MAX + 1] = {};
  gethostname(host, sizeof(host) - 1);
  return host;
}

double peak_rss_mib() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

size_t count_params(const std::vector<Parameter*>& params) {
  size_t n = 0;
  for (const Parameter* p : params) n += p->value.numel();
  return n;
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) return fmt::format("{:.1f}s", s);
  auto total = static_cast<long long>(std::llround(s));
  long long h = total / 3600, m = (total % 3600) / 60, sec = total % 60;
  return h > 0 ? fmt::format("{}h{:02}m{:02}s", h, m, sec) : fmt::format("{}m{:02}s", m, sec);
}

size_t batch_in_use(size_t batch_size, size_t shard_samples) {
  return std::min(batch_size, shard_samples);
}

std::string batch_text(size_t batch_size, size_t shard_samples, const char* holder) {
  const size_t n = batch_in_use(batch_size, shard_samples);
  return n == batch_size ? std::to_string(n)
                         : fmt::format("{} (--batch-size {}: a {} holds {} samples)", n, batch_size,
                                       holder, shard_samples);
}

void print_header_lines(const HeaderInfo& h) {
  log::rank0("dprun {} | world size {} | backend {}{}", dprun_version(), h.world, h.backend,
             h.algorithm.empty() ? "" : ", all-reduce " + h.algorithm);
  for (size_t r = 0; r < h.devices.size(); ++r) log::rank0("  rank {}: {}", r, h.devices[r]);
  log::rank0("model      {}", h.model);
  log::rank0("data       {}", h.data);
  const size_t global =
      batch_in_use(h.batch_size, h.shard_samples) * h.grad_accum * size_t(h.world);
  log::rank0(
      "batch      {} per rank x {} micro-batch(es) x {} rank(s) = {} global{}, {} steps/epoch",
      batch_text(h.batch_size, h.shard_samples, "rank"), h.grad_accum, h.world, global,
      h.sequence_length ? fmt::format(" ({} tokens: {} per sample)", global * h.sequence_length,
                                      h.sequence_length)
                        : "",
      h.steps_per_epoch);
  log::rank0("optimizer  {}", optimizer_text(h.optimizer, h.schedule, h.clip_grad_norm));
  log::rank0("reducer    {}, {}",
             h.overlap ? "overlapped with backward" : "after backward (--no-overlap)", h.buckets);
}

std::string interval_loss_text(const EpochLoss& interval) {
  const std::string skipped =
      interval.skipped > 0 ? fmt::format(" ({} skipped)", interval.skipped) : "";
  if (interval.skipped == interval.steps) return "loss n/a" + skipped;
  return fmt::format("loss {:.4f}{}", interval.mean(), skipped);
}

double eta_seconds(uint64_t step, uint64_t first_step, uint64_t total, double elapsed_s) {
  if (step >= total || step <= first_step) return 0;
  return elapsed_s / double(step - first_step) * double(total - step);
}

Progress::Progress(uint64_t total_steps, uint64_t interval, bool enabled, size_t tokens_per_sample,
                   uint64_t first_step)
    : total_(total_steps),
      interval_(interval),
      enabled_(enabled),
      tokens_per_sample_(tokens_per_sample),
      first_step_(first_step) {}

void Progress::step(const StepMetrics& m, uint64_t epoch, double elapsed_s) {
  ++n_;
  loss_.add(m.loss, m.skipped);
  samples_ += double(m.samples);
  seconds_ += m.step_ms / 1000.0;
  comm_ += m.comm_ms;
  exposed_ += m.exposed_comm_ms;
  if (!enabled_ || !(m.step == 1 || m.step % interval_ == 0 || m.step == total_)) return;
  const double eta = eta_seconds(m.step, first_step_, total_, elapsed_s);
  double overlap = comm_ > 0 ? std::max(0.0, 1.0 - exposed_ / comm_) : 0;
  const double rate = seconds_ > 0 ? samples_ / seconds_ : 0.0;
  const bool tokens = tokens_per_sample_ > 0;
  log::rank0(
      "epoch {:>3} | step {:>6}/{} | {} | lr {:.4g} | {:>9.0f} {}/s | comm {:.2f} ms, "
      "exposed {:.2f} ms, overlap {:>3.0f}% | ETA {}",
      epoch + 1, m.step, total_, interval_loss_text(loss_), m.lr,
      tokens ? rate * double(tokens_per_sample_) : rate, tokens ? "tokens" : "samples",
      comm_ / double(n_), exposed_ / double(n_), overlap * 100, format_duration(eta));
  n_ = 0;
  loss_ = EpochLoss{};
  samples_ = seconds_ = comm_ = exposed_ = 0;
}

void log_epoch_end(uint64_t epoch, uint64_t steps, uint64_t per_epoch, double train_loss,
                   const EvalResult* eval) {
  const std::string how =
      steps >= per_epoch ? "done" : fmt::format("ended after {} of {} steps", steps, per_epoch);
  if (eval) {
    log::rank0("epoch {:>3} {} | train loss {:.4f} | {} loss {:.4f} | {} accuracy {:.4f} ({} {})",
               epoch + 1, how, train_loss, eval->tokens ? "validation" : "test", eval->loss,
               eval->tokens ? "next-token" : "test", eval->accuracy, eval->samples,
               eval->tokens ? "tokens" : "samples");
  } else {
    log::rank0("epoch {:>3} {} | train loss {:.4f}", epoch + 1, how, train_loss);
  }
}

void log_eval(uint64_t step, const EvalResult& e, bool next_token) {
  if (next_token)
    log::rank0(
        "step {:>6} | validation loss {:.4f} (perplexity {:.2f}) | accuracy {:.4f} ({} "
        "targets)",
        step, e.loss, std::exp(e.loss), e.accuracy, e.samples);
  else
    log::rank0("step {:>6} | test loss {:.4f} | accuracy {:.4f} ({} samples)", step, e.loss,
               e.accuracy, e.samples);  // one target each: the epoch line's and summary's word
}

void log_eval_summary(const EvalResult& e) {
  if (e.tokens)
    log::rank0(
        "  validation loss {:.4f} nats/token (perplexity {:.2f}), next-token accuracy {:.4f} "
        "({} tokens)",
        e.loss, std::exp(e.loss), e.accuracy, e.samples);
  else
    log::rank0("  test accuracy   {:.4f} ({} samples), test loss {:.4f}", e.accuracy, e.samples,
               e.loss);
}

void Progress::epoch_end(uint64_t epoch, uint64_t steps, uint64_t per_epoch, double train_loss,
                         const EvalResult* eval) {
  if (enabled_) log_epoch_end(epoch, steps, per_epoch, train_loss, eval);
}

void log_train_loss(const TrainSummary& s) {
  if (s.train_loss && s.train_loss_epoch_steps > 0)
    log::rank0("  train loss      {:.4f} (epoch {}'s mean over the {} of its {} steps run)",
               *s.train_loss, s.train_loss_epoch + 1, s.train_loss_steps, s.train_loss_epoch_steps);
  else if (s.train_loss)
    log::rank0("  train loss      {:.4f} (last epoch mean)", *s.train_loss);
  else
    log::rank0("  train loss      - (stopped inside the first epoch)");
}

void print_summary(const TrainSummary& s) {
  log::rank0("summary: {} steps, {} epoch(s) in {}", s.steps, s.epochs, format_duration(s.wall_s));
  log_train_loss(s);
  const bool tokens = s.tokens_per_s > 0;
  if (s.evaluated) log_eval_summary(s.eval);
  if (tokens)
    log::rank0("  throughput      {:.0f} tokens/s ({:.1f} samples/s, global)", s.tokens_per_s,
               s.samples_per_s);
  else
    log::rank0("  throughput      {:.0f} samples/s (global)", s.samples_per_s);
  log::rank0("  communication   {:.3f} ms/step total, {:.3f} ms/step exposed, overlap {:.0f}%",
             s.comm_ms, s.exposed_comm_ms, s.overlap * 100);
  log::rank0("  peak memory     {:.0f} MiB resident (rank 0)", s.peak_rss_mib);
}

}  // namespace dp
