#pragma once
// Everything a training run is configured by. The launcher fills it from the command line
// or a config file; tests fill it directly.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/core/device.h"

namespace dp {

struct TrainConfig {
  // Model.
  std::string model = "mlp";
  // The model's own options (models/registry.h), by name, as the user gave them: "hidden"
  // -> "256,128". Options left out take the model's preset or default values.
  std::map<std::string, std::string> model_options;

  // Data (runtime/data/open_data.h): "idx:DIR", "cifar10:DIR", "tokens:FILE" or
  // "synthetic[:N]"; val_data "tokens:FILE" is the held-out split of token data.
  std::string data = "idx:/usr/share/datasets/fashion-mnist";
  std::string val_data;
  size_t synthetic_test_size = 2000;
  bool prefetch = true;
  size_t num_workers = 1;  // threads filling each batch (same batches for any count)

  // Schedule of the run.
  uint64_t epochs = 10;    // 0: no limit (then max_steps > 0 ends the run)
  uint64_t max_steps = 0;  // 0: no limit; else stop after this many optimizer steps
  size_t batch_size = 64;  // per rank, per micro-batch
  size_t grad_accum = 1;   // micro-batches per optimizer step
  uint64_t seed = 0;
  // fp32, or bf16 mixed precision: bfloat16 activations and GEMM operands, float32 master
  // weights, gradients and optimizer state (runtime/nn/linear.h).
  std::string precision = "fp32";

  // Optimizer and learning rate.
  std::string optimizer = "sgd";  // sgd | adamw
  float lr = 0.05f;
  float momentum = 0.0f;
  bool nesterov = false;
  float weight_decay = 0.0f;
  // Whether weight decay reaches parameters of fewer than 2 dimensions (biases, norm weights).
  bool weight_decay_1d = true;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float adam_eps = 1e-8f;
  // Cosine decay over the whole run by default (as llm.c and timm do): a constant rate
  // leaves SGD bouncing at the end of training; --lr-schedule constant keeps it fixed.
  std::string lr_schedule = "cosine";  // constant | cosine
  uint64_t warmup_steps = 0;
  float min_lr = 0.0f;
  float clip_grad_norm = 0.0f;  // 0: off
  // One contiguous block for all parameter values and one for all gradients, each parameter
  // a view (runtime/nn/parameter_arena.h): the optimizer step, zero_grad and the gradient
  // norm become single passes and the Reducer all-reduces the gradient block in place.
  // --no-param-arena turns it off (A/B measurements, debugging); results are the same.
  bool param_arena = true;

  // Where this rank computes (resolved by the launcher from --device; differs between ranks,
  // so it is not one of the settings the ranks compare).
  Device device = Device::cpu();

  // Module buffers (BatchNorm's running statistics): rank 0's are broadcast before every
  // forward, as DistributedDataParallel's broadcast_buffers (--no-broadcast-buffers).
  bool broadcast_buffers = true;
  // BatchNorm statistics over the global batch (torch.nn.SyncBatchNorm): N ranks x batch B
  // then train exactly as one rank with batch N x B.
  bool sync_batchnorm = false;

  // Gradient reduction.
  double first_bucket_mb = 1.0;
  double bucket_cap_mb = 25.0;
  // --first-bucket-mb auto, --bucket-cap-mb auto: chosen after profiling the first steps
  // (runtime/train/bucket_tuning.h); the caps above are used until then.
  bool first_bucket_auto = false;
  bool bucket_cap_auto = false;
  bool overlap = true;
  bool find_unused_parameters = false;
  // none, bf16_compress or fp16_compress: each bucket is all-reduced as bfloat16 or float16
  // (half the bytes on the wire) and widened back into the float32 gradients
  // (runtime/ddp/comm_hook.h).
  std::string comm_hook = "none";
  bool shared_memory = true;  // intra-node all-reduce through shared-memory bucket buffers
  // Across several nodes: auto, flat or hierarchical (runtime/comm/hierarchical_allreduce.h).
  std::string allreduce_algo = "auto";
  double timeout_s = 300;

  // Evaluation and output.
  bool eval = false;           // after every epoch
  uint64_t eval_every = 0;     // 0: off; else also every N steps and after the last
  uint64_t eval_batches = 0;   // 0: the whole split; else at most N batches per rank
  size_t eval_batch_size = 0;  // 0: the training batch size
  // Next-token models: rank 0 prints a text sampled from the model every N steps (0: off).
  uint64_t sample_every = 0;
  size_t sample_length = 200;  // tokens per sample
  float sample_temperature = 1.0f;
  size_t sample_top_k = 0;  // 0: sample from every token
  uint64_t log_interval = 100;
  std::string log_json;
  std::string dump_params;
  std::string trace;
  // Rank 0 writes the shapes of the CPU GEMMs of one training step (this process's third, or
  // its last when it runs fewer) to this file: bench_sgemm --shapes times OpenBLAS alone at
  // them (tests/bench/bench_models.sh).
  std::string gemm_profile;
  // Rank 0 writes the measured step profile, the all-reduce cost and the steps measured
  // after it to this file, for `dprun predict` (runtime/perf/run_profile.h).
  std::string profile_out;
  bool quiet = false;
  // The --config file the options came from, if any: an input that no output may overwrite.
  std::string config_file;

  // Checkpoints (runtime/train/checkpoint.h). With a directory, rank 0 writes
  // DIR/step-N.ckpt every checkpoint_every steps (0: never on a schedule), after the last
  // step, and when the job is preempted (SIGTERM, SIGINT, SIGUSR1).
  std::string checkpoint_dir;
  uint64_t checkpoint_every = 0;
  size_t keep_checkpoints = 0;  // 0: keep every checkpoint; else the newest K
  // "" (start fresh), "auto" (the newest checkpoint of checkpoint_dir that verifies, or a
  // fresh start when there is none) or a checkpoint file.
  std::string resume;
  // Load the checkpoint (--resume), then evaluate and/or sample without training: any world
  // size, e.g. one process without mpirun on a checkpoint written by N ranks.
  bool eval_only = false;
  // A step whose averaged gradient has a NaN or an infinity: "abort" (name the step and the
  // first such parameter, exit non-zero) or "skip" (no optimizer update for that step).
  std::string on_nonfinite = "abort";
};

// Checks the values that do not need data or ranks; throws dp::Error naming the option.
void validate(const TrainConfig& c);

}  // namespace dp
