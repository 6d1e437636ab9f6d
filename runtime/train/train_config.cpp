#include "runtime/train/train_config.h"

#include <cmath>
#include <limits>

#include "models/registry.h"
#include "runtime/core/error.h"
#include "runtime/core/units.h"
#include "runtime/ddp/bucket_assignment.h"
#include "runtime/ddp/comm_hook.h"

namespace dp {

void validate(const TrainConfig& c) {
  find_model(c.model);  // an unknown name lists the models
  DP_CHECK(c.num_workers >= 1 && c.num_workers <= 256, "--num-workers must be in 1..256 (got {})",
           c.num_workers);
  DP_CHECK(c.batch_size > 0, "--batch-size must be at least 1 (got 0)");
  // A batch's rows are a BLAS int in the layers' matmuls. Larger batches failed late (after
  // the model and its buckets were set up), as an allocation or a view out of range, and
  // without the option's name; --batch-size 2^62 overflowed the batch buffer's size.
  constexpr size_t kMaxBatch = std::numeric_limits<int>::max();
  DP_CHECK(c.batch_size <= kMaxBatch, "--batch-size must be at most {} (got {})", kMaxBatch,
           c.batch_size);
  DP_CHECK(c.eval_batch_size <= kMaxBatch, "--eval-batch-size must be at most {} (got {})",
           kMaxBatch, c.eval_batch_size);
  DP_CHECK(c.grad_accum > 0, "--grad-accum must be at least 1 (got 0)");
  DP_CHECK(c.epochs > 0 || c.max_steps > 0, "--epochs 0 with no --steps: nothing to train");
  DP_CHECK(c.precision == "fp32" || c.precision == "bf16",
           "--precision {}: unknown precision (available: fp32, bf16)", c.precision);
  try {
    parse_comm_hook(c.comm_hook);
  } catch (const Error& e) {
    fail("--comm-hook: {}", e.what());
  }
  DP_CHECK(c.allreduce_algo == "auto" || c.allreduce_algo == "flat" ||
               c.allreduce_algo == "hierarchical",
           "--allreduce-algo {}: unknown algorithm (available: auto, flat, hierarchical)",
           c.allreduce_algo);
  DP_CHECK(c.optimizer == "sgd" || c.optimizer == "adamw",
           "--optimizer {}: unknown optimizer (available: sgd, adamw)", c.optimizer);
  DP_CHECK(std::isfinite(c.lr) && c.lr > 0, "--lr must be a positive number (got {})", c.lr);
  DP_CHECK(c.momentum >= 0 && c.momentum < 1, "--momentum must be in [0, 1) (got {})", c.momentum);
  DP_CHECK(!c.nesterov || c.momentum > 0, "--nesterov needs --momentum > 0");
  // Here, not only in the optimizers: their messages name no option, and a value from
  // --config gets its file and line only from an error that names the option.
  DP_CHECK(std::isfinite(c.weight_decay) && c.weight_decay >= 0,
           "--weight-decay must be a finite number >= 0 (got {})", c.weight_decay);
  DP_CHECK(c.beta1 >= 0 && c.beta1 < 1, "--beta1 must be in [0, 1) (got {})", c.beta1);
  DP_CHECK(c.beta2 >= 0 && c.beta2 < 1, "--beta2 must be in [0, 1) (got {})", c.beta2);
  DP_CHECK(std::isfinite(c.adam_eps) && c.adam_eps >= 0,
           "--adam-eps must be a finite number >= 0 (got {})", c.adam_eps);
  DP_CHECK(c.lr_schedule == "constant" || c.lr_schedule == "cosine",
           "--lr-schedule {}: unknown schedule (available: constant, cosine)", c.lr_schedule);
  DP_CHECK(c.min_lr >= 0 && c.min_lr <= c.lr, "--min-lr must be in [0, --lr] (got {})", c.min_lr);
  // It would be ignored: the constant schedule never decays.
  DP_CHECK(c.min_lr == 0 || c.lr_schedule == "cosine",
           "--min-lr {} applies to --lr-schedule cosine only (this run's is {})", c.min_lr,
           c.lr_schedule);
  // inf passed here and aborted the job at its first step, in clip_grad_norm's own words.
  DP_CHECK(std::isfinite(c.clip_grad_norm) && c.clip_grad_norm >= 0,
           "--clip-grad-norm must be a finite number >= 0 (0: off; got {})", c.clip_grad_norm);
  // A bucket holds at least one float (4 bytes), and at most kMaxBucketMb: other sizes failed
  // later, in the Reducer, through MPI_Abort and without the option's name.
  constexpr double kFloatMb = bytes_to_mb(4.0);
  DP_CHECK(std::isfinite(c.first_bucket_mb) && c.first_bucket_mb >= kFloatMb &&
               c.first_bucket_mb <= kMaxBucketMb,
           "--first-bucket-mb must be a number of MB of at least one float (4 bytes) and at most "
           "{} MB (2^50 bytes), got {}",
           kMaxBucketMb, c.first_bucket_mb);
  DP_CHECK(std::isfinite(c.bucket_cap_mb) && c.bucket_cap_mb >= kFloatMb &&
               c.bucket_cap_mb <= kMaxBucketMb,
           "--bucket-cap-mb must be a number of MB of at least one float (4 bytes) and at most "
           "{} MB (2^50 bytes), got {}",
           kMaxBucketMb, c.bucket_cap_mb);
  // Deadlines are counted in milliseconds on a steady clock: below 1 ms the group's timeout
  // rounds to 0 (refused later, through MPI_Abort), and a huge one overflows the deadline's
  // arithmetic into the past (a hang reported at once). A year is more than any step takes.
  DP_CHECK(std::isfinite(c.timeout_s) && c.timeout_s >= 0.001 && c.timeout_s <= 365 * 86400.0,
           "--timeout must be a number of seconds from 0.001 to 31536000 (a year), got {}",
           c.timeout_s);
  DP_CHECK(c.log_interval > 0, "--log-interval must be at least 1");
  // The sample is generated in memory after hours of training: 2^64 - 1 failed there, in
  // vector::reserve's words, before the step's checkpoint was written.
  constexpr size_t kMaxSampleLength = 1000000;
  DP_CHECK(c.sample_length > 0 && c.sample_length <= kMaxSampleLength,
           "--sample-length must be from 1 to {} tokens (got {})", kMaxSampleLength,
           c.sample_length);
  DP_CHECK(std::isfinite(c.sample_temperature) && c.sample_temperature >= 0,
           "--sample-temperature must be a number >= 0 (0: greedy, the most likely token; got {})",
           c.sample_temperature);
  DP_CHECK(c.on_nonfinite == "abort" || c.on_nonfinite == "skip",
           "--on-nonfinite {}: expected abort or skip", c.on_nonfinite);
  DP_CHECK(c.checkpoint_every == 0 || !c.checkpoint_dir.empty(),
           "--checkpoint-every needs --checkpoint-dir (where to write them)");
  DP_CHECK(c.keep_checkpoints == 0 || !c.checkpoint_dir.empty(),
           "--keep-checkpoints needs --checkpoint-dir");
  DP_CHECK(c.resume != "auto" || !c.checkpoint_dir.empty(),
           "--resume auto needs --checkpoint-dir (where to look for the newest checkpoint)");
  DP_CHECK((c.eval_batches == 0 && c.eval_batch_size == 0) || c.eval || c.eval_every > 0,
           "--eval-batches and --eval-batch-size need --eval or --eval-every (without them "
           "nothing is evaluated)");
  DP_CHECK(!c.eval_only || !c.resume.empty(),
           "--eval-only needs --resume PATH (the checkpoint to evaluate)");
  DP_CHECK(!c.eval_only || c.eval || c.eval_every > 0 || c.sample_every > 0,
           "--eval-only: nothing to do; add --eval and/or --sample-every N");
}

}  // namespace dp
