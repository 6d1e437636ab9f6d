#include "runtime/train/data_parallel.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include <cblas.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "models/registry.h"
#include "runtime/core/clock.h"
#include "runtime/core/device.h"
#include "runtime/core/error.h"
#include "runtime/core/log.h"
#include "runtime/data/dataloader.h"
#include "runtime/data/open_data.h"
#include "runtime/dp/gather.h"
#include "runtime/dp/global_batch_dataset.h"
#include "runtime/dp/replica_threads.h"
#include "runtime/dp/replicate.h"
#include "runtime/dp/scatter.h"
#include "runtime/nn/buffers.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/parameter_arena.h"
#include "runtime/optim/clip_grad.h"
#include "runtime/optim/lr_schedule.h"
#include "runtime/train/data_parallel_report.h"
#include "runtime/train/optimizer_setup.h"
#include "runtime/train/output_paths.h"
#include "runtime/train/param_io.h"
#include "runtime/train/preemption.h"
#include "runtime/train/report.h"
#include "runtime/train/run_record.h"
#include "runtime/train/text_sample.h"
#include "runtime/train/training_data.h"
#include "samplers/distributed_sampler.h"

namespace dp {

namespace {

// Steps left out of the mean times while a longer run warms up (first-touch page faults,
// the loader's first fills, OpenBLAS's buffers).
constexpr uint64_t kWarmupSteps = 5;

// The options that configure DDP's machinery (collectives, buckets, processes, checkpoints
// of an N-rank job): none of them means anything for one process with replicas, so they
// are refused by name rather than ignored.
void check_data_parallel_config(const TrainConfig& c, size_t replicas) {
  DP_CHECK(replicas >= 1 && replicas <= 1024, "--replicas must be in 1..1024 (got {})", replicas);
  auto refuse = [](bool given, const char* option, const char* why) {
    DP_CHECK(!given, "{} is not available with --mode dp: {}", option, why);
  };
  refuse(c.sync_batchnorm, "--sync-batchnorm",
         "DataParallel normalises each replica's chunk with its own statistics (as "
         "torch.nn.DataParallel does)");
  refuse(!c.broadcast_buffers, "--no-broadcast-buffers",
         "DataParallel always copies replica 0's buffers to the others before a forward");
  refuse(c.comm_hook != "none", "--comm-hook", "DataParallel has no gradient all-reduce");
  refuse(!c.overlap, "--no-overlap", "DataParallel gathers the gradients after backward anyway");
  refuse(!c.shared_memory, "--no-shm", "one process shares its memory anyway");
  refuse(!c.checkpoint_dir.empty() || !c.resume.empty() || c.eval_only,
         "--checkpoint-dir/--resume/--eval-only", "checkpoints are written by --mode ddp only");
  refuse(!c.trace.empty(), "--trace", "the trace records DDP's ranks and buckets");
  refuse(!c.gemm_profile.empty(), "--gemm-profile",
         "the replicas' threads would mix their GEMMs in one profile");
  // Compared with TrainConfig's defaults: a value given equal to the default is harmless.
  const TrainConfig d;
  refuse(c.first_bucket_auto || c.bucket_cap_auto || c.first_bucket_mb != d.first_bucket_mb ||
             c.bucket_cap_mb != d.bucket_cap_mb,
         "--first-bucket-mb/--bucket-cap-mb", "DataParallel has no gradient buckets");
  refuse(!c.profile_out.empty(), "--profile-out",
         "the profile is of DDP's buckets and all-reduces (dprun predict reads it)");
  refuse(c.allreduce_algo != d.allreduce_algo, "--allreduce-algo",
         "DataParallel has no all-reduce");
  refuse(c.find_unused_parameters, "--find-unused-parameters",
         "DataParallel gathers every replica's gradients, used or not");
  refuse(c.timeout_s != d.timeout_s, "--timeout", "one process has no collective to time out");
}

// The labels as the loss takes them: [B] as they are, [B, T] flattened into `flat`.
const Tensor& loss_targets(const Tensor& y, Tensor& flat) {
  if (y.ndim() == 1) return y;
  flat = y.reshape({static_cast<int64_t>(y.numel())});
  return flat;
}

}  // namespace

struct DataParallelTrainer::Replica {
  Device device;
  std::unique_ptr<Module> model;
  std::unique_ptr<ParameterArena> arena;  // null with --no-param-arena
  ReplicaState state;
  SoftmaxCrossEntropy loss_fn;
  Tensor x, y, flat_targets;  // this replica's chunk of the global batch, on its device
  float loss_sum = 0;         // over the micro-batches of the step
  double forward_us = 0, backward_us = 0;
};

void DataParallelTimes::add(const DataParallelTimes& o) {
  step += o.step;
  data += o.data;
  scatter += o.scatter;
  replicate += o.replicate;
  parallel += o.parallel;
  forward += o.forward;
  backward += o.backward;
  slowest += o.slowest;
  gather += o.gather;
  update += o.update;
}

void DataParallelTimes::scale(double s) {
  step *= s;
  data *= s;
  scatter *= s;
  replicate *= s;
  parallel *= s;
  forward *= s;
  backward *= s;
  slowest *= s;
  gather *= s;
  update *= s;
}

size_t default_replicas(const Device& device) {
  if (device.is_cuda()) return size_t(std::max(1, cuda_device_count() - device.index));
  return std::max(1u, std::thread::hardware_concurrency());
}

DataParallelTrainer::DataParallelTrainer(TrainConfig config, size_t replicas)
    : cfg_(std::move(config)) {
  validate(cfg_);
  check_data_parallel_config(cfg_, replicas);
  const size_t n = replicas;
  if (cfg_.device.is_cuda()) {
    const int visible = cuda_device_count();
    DP_CHECK(cfg_.device.index + int(n) <= visible,
             "--mode dp --replicas {} on {} needs cuda:{}..cuda:{}, but {} GPU(s) are visible", n,
             cfg_.device.str(), cfg_.device.index, cfg_.device.index + int(n) - 1, visible);
    // Replica 0's GPU is the main thread's (the loader's pinned buffers come next).
    cuda_set_current_device(cfg_.device.index);
  } else {
    // The replicas are the parallelism, one thread each, as every DDP rank runs one OpenBLAS
    // thread: concurrent multi-threaded GEMMs would oversubscribe the cores.
    openblas_set_num_threads(1);
  }
  entry_ = &find_model(cfg_.model);
  if (entry_->sequence_length) {
    sequence_length_ = static_cast<size_t>(
        entry_->sequence_length(make_model_args(*entry_, cfg_.model_options, {}, cfg_.seed)));
  }
  DataSplits data = open_training_data(cfg_, *entry_, sequence_length_);
  train_set_ = std::move(data.train);
  test_set_ = std::move(data.test);
  const DataShape shape{data_kind_name(train_set_->kind()), train_set_->sample_shape(),
                        train_set_->num_classes()};
  // DDP's per-rank sample count (and its refusal of more ranks than samples).
  check_samples_for_ranks(cfg_, *train_set_, n, "replicas");
  const DistributedSampler probe(train_set_->size(), int(n), 0, /*shuffle=*/true, cfg_.seed,
                                 /*drop_last=*/false);
  const size_t batches = (probe.num_samples() + cfg_.batch_size - 1) / cfg_.batch_size;
  DP_CHECK(batches >= cfg_.grad_accum,
           "--grad-accum {} needs at least that many batches per epoch, but each replica gets "
           "only {} batch(es) of {} from {} samples",
           cfg_.grad_accum, batches, cfg_.batch_size, train_set_->size());
  steps_per_epoch_ = batches / cfg_.grad_accum;
  shard_samples_ = probe.num_samples();

  // Every replica is built like a DDP rank's model (same registry, same seed); replicate()
  // makes them replica 0's before each step anyway.
  std::vector<std::vector<Parameter*>> params;
  for (size_t r = 0; r < n; ++r) {
    auto rep = std::make_unique<Replica>();
    rep->device = cfg_.device.is_cuda() ? Device::cuda(cfg_.device.index + int(r)) : Device::cpu();
    BuiltModel built =
        entry_->build(make_model_args(*entry_, cfg_.model_options, shape, cfg_.seed));
    rep->model = std::move(built.module);
    if (r == 0) model_description_ = std::move(built.description);
    if (rep->device.is_cuda()) rep->model->to(rep->device);
    rep->model->set_compute_dtype(cfg_.precision == "bf16" ? DType::bf16 : DType::f32);
    // On its device, before anything keeps its parameters' tensors (gather, optimizer).
    if (cfg_.param_arena) rep->arena = std::make_unique<ParameterArena>(rep->model->parameters());
    rep->state = ReplicaState::of(*rep->model);
    if (r > 0) check_same_replica(replicas_[0]->state, rep->state, r);
    params.push_back(rep->state.params);
    replicas_.push_back(std::move(rep));
  }
  gather_ = std::make_unique<GradientGather>(std::move(params));
  threads_ = std::make_unique<ReplicaThreads>(n);
  ParameterArena* arena = replicas_[0]->arena.get();
  optimizer_ = make_optimizer(cfg_, parameters(), arena);
  schedule_ = make_schedule(cfg_, steps_per_epoch_);
  check_training_paths(cfg_);
  if (!cfg_.dump_params.empty()) check_output_path("--dump-params", cfg_.dump_params);
  if (!cfg_.log_json.empty()) {
    check_output_path("--log-json", cfg_.log_json);
    log_ = JsonLog(cfg_.log_json);
  }
}

DataParallelTrainer::~DataParallelTrainer() = default;

std::vector<Parameter*> DataParallelTrainer::parameters() const {
  return replicas_[0]->state.params;
}

std::vector<Buffer*> DataParallelTrainer::buffers() const {
  return replicas_[0]->state.buffers;
}

DataParallelTimes DataParallelTrainer::mean_times() const {
  DataParallelTimes t = warm_steps_ > 0 ? warm_times_ : sum_times_;
  const uint64_t count = warm_steps_ > 0 ? warm_steps_ : step_;
  if (count > 0) t.scale(1.0 / double(count));
  return t;
}

void DataParallelTrainer::start_epoch(uint64_t epoch) {
  // A fresh order and loader per epoch: the old loader (and its prefetch thread) is gone
  // before the order it read is.
  loader_.reset();
  loader_sampler_.reset();
  epoch_order_ = std::make_unique<GlobalBatchDataset>(*train_set_, replicas_.size(),
                                                      cfg_.batch_size, cfg_.seed, epoch);
  loader_sampler_ = std::make_unique<DistributedSampler>(epoch_order_->size(), 1, 0,
                                                         /*shuffle=*/false, cfg_.seed);
  // The loader's threads may use every CPU, not only replica 0's (which they would inherit).
  threads_->with_caller_affinity([&] {
    loader_ = std::make_unique<DataLoader>(*epoch_order_, *loader_sampler_,
                                           cfg_.batch_size * replicas_.size(), cfg_.prefetch,
                                           /*pin_memory=*/cfg_.device.is_cuda(), cfg_.num_workers);
  });
  loader_->start_epoch(epoch);
}

void DataParallelTrainer::replicate_all(bool buffers_only) {
  const ReplicaState& first = replicas_[0]->state;
  for (size_t r = 1; r < replicas_.size(); ++r) {
    if (buffers_only)
      replicate({{}, first.buffers}, {{}, replicas_[r]->state.buffers});
    else
      replicate(first, replicas_[r]->state);
  }
}

void DataParallelTrainer::train_step(uint64_t epoch, StepMetrics& m, DataParallelTimes& t) {
  const size_t K = cfg_.grad_accum;
  const size_t n = replicas_.size();
  t = DataParallelTimes{};
  const double t_step = now_us();
  // Replica 0's buffers are the ones every forward copies to the others: a skipped step puts
  // them back as DDP's ranks do, or the bad batch's statistics would live on.
  const bool may_skip = cfg_.on_nonfinite == "skip";
  if (may_skip) buffer_snapshot_.save(buffers());
  // The global batch's; micro-batch k weighs by its share of them, as under DDP (trainer.cpp).
  const size_t rows = loader_->rows_in_next(K);
  for (size_t k = 0; k < K; ++k) {
    const double t0 = now_us();
    const Batch* batch = loader_->next();
    DP_CHECK(batch != nullptr, "internal: the data loader ran out of batches mid-step");
    const float weight = static_cast<float>(batch->size) / static_cast<float>(rows);
    const double t1 = now_us();
    for (size_t r = 0; r < n; ++r) {
      Replica& rep = *replicas_[r];
      scatter_chunk(batch->x, n, r, rep.x, rep.device);
      scatter_chunk(batch->y, n, r, rep.y, rep.device);
    }
    const double t2 = now_us();
    // Parameters change only at the update; buffers at every training forward, and DDP
    // broadcasts rank 0's before each micro-batch.
    replicate_all(/*buffers_only=*/k > 0);
    const double t3 = now_us();
    threads_->run([&](size_t r) {
      Replica& rep = *replicas_[r];
      if (rep.device.is_cuda()) cuda_set_current_device(rep.device.index);
      if (k == 0) {
        if (rep.arena != nullptr && rep.arena->grads_intact())
          rep.arena->grads().zero_();  // one memset
        else
          for (Parameter* p : rep.state.params) p->grad.zero_();
        rep.loss_sum = 0;
        rep.forward_us = rep.backward_us = 0;
      }
      const double a = now_us();
      const Tensor& logits = rep.model->forward(rep.x);
      rep.loss_sum += weight * rep.loss_fn.forward(logits, loss_targets(rep.y, rep.flat_targets));
      const double b = now_us();
      rep.model->backward(rep.loss_fn.backward(weight));
      if (rep.device.is_cuda()) cuda_sync(rep.device.index);  // backward has run, not just queued
      const double c = now_us();
      rep.forward_us += b - a;
      rep.backward_us += c - b;
    });
    const double t4 = now_us();
    t.data += (t1 - t0) / 1000.0;
    t.scatter += (t2 - t1) / 1000.0;
    t.replicate += (t3 - t2) / 1000.0;
    t.parallel += (t4 - t3) / 1000.0;
  }

  const double t5 = now_us();
  losses_.resize(n);
  for (size_t r = 0; r < n; ++r) losses_[r] = replicas_[r]->loss_sum;
  const float loss = mean_over_replicas(losses_);
  gather_->gather();
  const double t6 = now_us();
  const double norm =
      cfg_.clip_grad_norm > 0
          ? clip_grad_norm(optimizer_->params(), cfg_.clip_grad_norm, replicas_[0]->arena.get())
          : grad_norm(optimizer_->params(), replicas_[0]->arena.get());
  std::string nonfinite;
  float bad = 0;
  if (!std::isfinite(norm)) nonfinite = first_nonfinite_grad(optimizer_->params(), &bad);
  const float lr = schedule_->lr(static_cast<int64_t>(step_));
  if (nonfinite.empty()) optimizer_->step(lr);
  if (replicas_[0]->device.is_cuda()) cuda_sync(replicas_[0]->device.index);
  const double t_end = now_us();
  ++step_;
  if (!nonfinite.empty()) {
    if (cfg_.on_nonfinite == "abort")
      fail(
          "step {}: the averaged gradient of '{}' has a non-finite value ({}): training "
          "diverged (lower --lr, add --clip-grad-norm, or --on-nonfinite skip to skip such steps)",
          step_, nonfinite, bad);
    ++skipped_steps_;
    if (may_skip) buffer_snapshot_.restore();
    log::warn(
        "step {}: skipped (no update): the averaged gradient of '{}' is {} (--on-nonfinite "
        "skip; {} step(s) skipped so far)",
        step_, nonfinite, bad, skipped_steps_);
  }

  t.gather = (t6 - t5) / 1000.0;
  t.update = (t_end - t6) / 1000.0;
  t.step = (t_end - t_step) / 1000.0;
  t.forward = replicas_[0]->forward_us / 1000.0;
  t.backward = replicas_[0]->backward_us / 1000.0;
  for (const auto& rep : replicas_)
    t.slowest = std::max(t.slowest, (rep->forward_us + rep->backward_us) / 1000.0);

  m.step = step_;
  m.epoch = epoch;
  m.skipped = !nonfinite.empty();
  m.loss = loss;
  m.lr = lr;
  m.grad_norm = norm;
  m.step_ms = t.step;
  m.samples = rows;
  m.samples_per_s = double(m.samples) / (t.step / 1000.0);
  m.tokens_per_s = m.samples_per_s * double(sequence_length_);
  m.data_ms = t.data;
  m.forward_ms = t.forward;
  m.backward_ms = t.backward;
  m.optimizer_ms = t.update;
  // What DDP spends on communication, DataParallel spends on replica 0's extra work, none of
  // it hidden behind backward.
  m.comm_ms = m.exposed_comm_ms = t.extra();
  m.other_wait_ms = 0;
  m.overlap = 0;
}

EvalResult DataParallelTrainer::evaluate() {
  const size_t n = replicas_.size();
  replicate_all(/*buffers_only=*/false);  // the others still hold the previous step's values
  const size_t eval_batch = cfg_.eval_batch_size ? cfg_.eval_batch_size : cfg_.batch_size;
  std::vector<double> loss_sum(n, 0.0), correct(n, 0.0), count(n, 0.0);
  threads_->run([&](size_t r) {
    Replica& rep = *replicas_[r];
    if (rep.device.is_cuda()) cuda_set_current_device(rep.device.index);
    // DDP's evaluation shards: rank r's samples, each counted once.
    DistributedSampler shard = DistributedSampler::exact(test_set_->size(), int(n), int(r));
    DataLoader loader(*test_set_, shard, eval_batch, cfg_.prefetch, /*pin_memory=*/false,
                      cfg_.num_workers);
    loader.start_epoch(0);
    SoftmaxCrossEntropy loss_fn("eval loss");
    rep.loss_fn.release_buffers();  // the training loss's [B, C] is not needed meanwhile
    Tensor x_dev, y_dev, flat;
    rep.model->eval();
    size_t k = 0;
    while (const Batch* b = loader.next()) {
      if (cfg_.eval_batches > 0 && k >= cfg_.eval_batches) break;
      ++k;
      const Tensor* x = &b->x;
      const Tensor* y = &b->y;
      if (rep.device.is_cuda()) {
        ensure_like(x_dev, b->x, b->x.dtype(), rep.device);
        ensure_like(y_dev, b->y, b->y.dtype(), rep.device);
        x_dev.copy_(b->x);
        y_dev.copy_(b->y);
        x = &x_dev;
        y = &y_dev;
      }
      const double targets = double(y->numel());
      loss_sum[r] +=
          double(loss_fn.forward(rep.model->forward(*x), loss_targets(*y, flat))) * targets;
      correct[r] += double(loss_fn.correct());
      count[r] += targets;
    }
    rep.model->train();
  });
  double l = 0, c = 0, total = 0;
  for (size_t r = 0; r < n; ++r) {
    l += loss_sum[r];
    c += correct[r];
    total += count[r];
  }
  EvalResult e;
  e.samples = static_cast<size_t>(total);
  e.tokens = entry_->loss == LossKind::next_token;
  e.loss = total > 0 ? l / total : 0;
  e.accuracy = total > 0 ? c / total : 0;
  return e;
}

void DataParallelTrainer::evaluate_and_log(uint64_t epoch, TrainSummary& sum) {
  sum.eval = evaluate();
  sum.evaluated = true;
  last_eval_step_ = step_;
  if (log_.is_open())
    log_.write({{"type", "eval"},
                {"step", step_},
                {"epoch", epoch},
                {"test_loss", sum.eval.loss},
                {"test_accuracy", sum.eval.accuracy},
                {"test_samples", sum.eval.samples}});
}

void DataParallelTrainer::log_step(const StepMetrics& m, const DataParallelTimes& t) {
  if (!log_.is_open()) return;
  nlohmann::json j = {{"type", "step"},
                      {"mode", "dp"},
                      {"replicas", replicas_.size()},
                      {"step", m.step},
                      {"epoch", m.epoch},
                      {"loss", m.loss},
                      {"lr", m.lr},
                      {"grad_norm", m.grad_norm},
                      {"samples_per_s", m.samples_per_s},
                      {"step_ms", t.step},
                      {"wall_s", m.wall_s},
                      {"data_ms", t.data},
                      {"scatter_ms", t.scatter},
                      {"replicate_ms", t.replicate},
                      {"parallel_ms", t.parallel},
                      {"forward_ms", t.forward},
                      {"backward_ms", t.backward},
                      {"slowest_replica_ms", t.slowest},
                      {"gather_ms", t.gather},
                      {"optimizer_ms", t.update},
                      {"extra_ms", t.extra()}};
  if (sequence_length_ > 0) j["tokens_per_s"] = m.tokens_per_s;
  if (m.skipped) j["skipped"] = true;
  log_.write(j);
}

TrainSummary DataParallelTrainer::run() {
  DataParallelReport report(cfg_.quiet);
  if (log_.is_open()) {
    RunShape shape;
    shape.mode = "dp";
    shape.world_size = replicas_.size();
    shape.parameters = count_params(parameters());
    shape.batch = batch_in_use(cfg_.batch_size, shard_samples_);
    shape.steps_per_epoch = steps_per_epoch_;
    shape.total_steps = run_total_steps(cfg_, steps_per_epoch_);
    shape.optimizer = optimizer_->describe();
    shape.schedule = schedule_->describe();
    shape.sequence_length = sequence_length_;
    log_.write(run_record(cfg_, shape));
  }
  {
    DataParallelHeader h;
    h.replicas = replicas_.size();
    for (size_t r = 0; r < replicas_.size(); ++r) {
      h.devices.push_back(replicas_[r]->device);
      h.cpus.push_back(threads_->cpu(r));
    }
    h.model =
        fmt::format("{} ({} parameters{}), {}", model_description_, count_params(parameters()),
                    buffers().empty() ? "" : fmt::format(", {} buffers", buffers().size()),
                    cfg_.precision == "bf16" ? "bf16 mixed precision" : "float32");
    h.data = fmt::format("{} | {}: {}", train_set_->describe(),
                         entry_->loss == LossKind::next_token ? "validation" : "test",
                         test_set_ ? test_set_->describe() : "none");
    h.batch_size = cfg_.batch_size;
    h.shard_samples = shard_samples_;
    h.grad_accum = cfg_.grad_accum;
    h.sequence_length = sequence_length_;
    h.steps_per_epoch = steps_per_epoch_;
    h.optimizer = optimizer_->describe();
    h.schedule = schedule_->describe();
    h.clip_grad_norm = cfg_.clip_grad_norm;
    h.replicate_bytes = replicate_bytes(replicas_[0]->state);
    h.gather_bytes = gather_->bytes();
    report.header(h);
  }
  install_preemption_handlers(0);
  set_preemption_checkpointing(false);  // --mode dp writes no checkpoints
  const double t_start = now_us();
  TrainSummary sum;
  const uint64_t total_steps = run_total_steps(cfg_, steps_per_epoch_);
  report.set_total(total_steps, cfg_.log_interval, sequence_length_);
  double train_ms = 0;
  uint64_t samples = 0;
  int signal = 0;
  StepMetrics m;
  DataParallelTimes t;
  for (uint64_t epoch = 0; step_ < total_steps && signal == 0; ++epoch) {
    start_epoch(epoch);
    EpochLoss epoch_loss;
    for (uint64_t s = 0; s < steps_per_epoch_ && step_ < total_steps; ++s) {
      train_step(epoch, m, t);
      m.wall_s = (now_us() - t_start) / 1e6;
      epoch_loss.add(m.loss, m.skipped);
      train_ms += t.step;
      samples += m.samples;
      sum_times_.add(t);
      if (step_ > kWarmupSteps) {
        warm_times_.add(t);
        ++warm_steps_;
      }
      log_step(m, t);
      report.step(m, t, epoch, m.wall_s);
      if (!std::isfinite(m.loss) && cfg_.on_nonfinite == "abort")
        fail("step {}: the loss is {} (training diverged: try a lower --lr)", m.step, m.loss);
      if (cfg_.eval_every > 0 && (step_ % cfg_.eval_every == 0 || step_ == total_steps)) {
        evaluate_and_log(epoch, sum);
        report.eval(step_, sum.eval, entry_->loss == LossKind::next_token);
      }
      if (cfg_.sample_every > 0 && (step_ % cfg_.sample_every == 0 || step_ == total_steps))
        log::rank0(
            "sample at step {}:\n{}\n---", step_,
            sample_text(*entry_, *replicas_[0]->model, train_set_->num_classes(), cfg_, step_));
      signal = preemption_signal();
      if (signal != 0) break;
    }
    sum.epochs = epoch + 1;
    if (signal != 0) break;
    sum.train_loss = epoch_loss.mean();
    sum.epoch_ended(epoch, epoch_loss.steps, steps_per_epoch_);
    if (cfg_.eval && last_eval_step_ != step_) evaluate_and_log(epoch, sum);
    report.epoch_end(epoch, epoch_loss.steps, steps_per_epoch_, *sum.train_loss,
                     cfg_.eval ? &sum.eval : nullptr);
  }
  loader_.reset();
  if (signal != 0)
    fail("stopped by {} after step {}: --mode dp writes no checkpoints, so nothing was saved",
         signal_name(signal), step_);
  sum.steps = step_;
  sum.wall_s = (now_us() - t_start) / 1e6;
  sum.samples_per_s = train_ms > 0 ? double(samples) / (train_ms / 1000.0) : 0;
  sum.tokens_per_s = sum.samples_per_s * double(sequence_length_);
  const DataParallelTimes mean = mean_times();
  sum.comm_ms = sum.exposed_comm_ms = mean.extra();
  sum.overlap = 0;
  sum.peak_rss_mib = peak_rss_mib();
  sum.skipped_steps = skipped_steps_;
  if (!cfg_.dump_params.empty()) dump_params(parameters(), buffers(), cfg_.dump_params);
  report.summary(sum, mean,
                 warm_steps_ > 0 ? fmt::format("mean of steps {}-{}", kWarmupSteps + 1, step_)
                                 : fmt::format("mean of all {} step(s)", step_));
  if (log_.is_open()) {
    nlohmann::json j = summary_record(sum, sequence_length_);
    j.update({{"mode", "dp"},
              {"replicas", replicas_.size()},
              {"step_ms", mean.step},
              {"data_ms", mean.data},
              {"scatter_ms", mean.scatter},
              {"replicate_ms", mean.replicate},
              {"parallel_ms", mean.parallel},
              {"forward_ms", mean.forward},
              {"backward_ms", mean.backward},
              {"slowest_replica_ms", mean.slowest},
              {"gather_ms", mean.gather},
              {"optimizer_ms", mean.update},
              {"extra_ms", mean.extra()}});
    log_.write(j);
  }
  return sum;
}

}  // namespace dp
