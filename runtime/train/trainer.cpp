#include "runtime/train/trainer.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>

#include <cblas.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "models/registry.h"
#include "runtime/comm/gather_strings.h"
#include "runtime/comm/mpi_runtime.h"
#include "runtime/core/clock.h"
#include "runtime/core/device.h"
#include "runtime/core/error.h"
#include "runtime/core/log.h"
#include "runtime/core/units.h"
#include "runtime/core/version.h"
#include "runtime/data/dataloader.h"
#include "runtime/data/open_data.h"
#include "runtime/ddp/buffer_sync.h"
#include "runtime/ddp/reducer.h"
#include "runtime/nn/batchnorm2d.h"
#include "runtime/nn/buffers.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/parameter_arena.h"
#include "runtime/ops/cpu/blas_threads.h"
#include "runtime/ops/cpu/gemm_profile.h"
#include "runtime/optim/clip_grad.h"
#include "runtime/optim/lr_schedule.h"
#include "runtime/train/bucket_tuning.h"
#include "runtime/train/checkpoint_dir.h"
#include "runtime/train/config_check.h"
#include "runtime/train/optimizer_setup.h"
#include "runtime/train/output_paths.h"
#include "runtime/train/param_io.h"
#include "runtime/train/preemption.h"
#include "runtime/train/report.h"
#include "runtime/train/resume_check.h"
#include "runtime/train/run_record.h"
#include "runtime/train/text_sample.h"
#include "runtime/train/training_data.h"
#include "samplers/distributed_sampler.h"

namespace dp {

namespace {

// Rank 0's checkpoint verdict when the checkpoint was written but its --log-json record was
// not: the text after it is the message.
constexpr const char* kLogFailed = "log-failed\n";

DataShape shape_of(const Dataset& d) {
  return DataShape{data_kind_name(d.kind()), d.sample_shape(), d.num_classes()};
}

}  // namespace

Trainer::Trainer(TrainConfig config, int rank, int world_size)
    : cfg_(std::move(config)), rank_(rank), world_(world_size) {
  validate(cfg_);
  fault_.maybe_stall(rank_, 0);  // DPRUN_FAULT_STALL step=0: a rank stuck loading its data
  // Before any CUDA call of this thread (the loader's pinned buffers come next): else the
  // first one creates a context on cuda:0, on every rank of the node.
  if (cfg_.device.is_cuda()) cuda_set_current_device(cfg_.device.index);
  entry_ = &find_model(cfg_.model);
  // The model decides how long token windows are (its context) before the data is cut.
  if (entry_->sequence_length) {
    const int64_t t =
        entry_->sequence_length(make_model_args(*entry_, cfg_.model_options, {}, cfg_.seed));
    sequence_length_ = static_cast<size_t>(t);
  }
  DataSplits data = open_training_data(cfg_, *entry_, sequence_length_);
  train_set_ = std::move(data.train);
  test_set_ = std::move(data.test);
  const DataShape shape = shape_of(*train_set_);
  check_samples_for_ranks(cfg_, *train_set_, size_t(world_), "ranks");
  sampler_ = std::make_unique<DistributedSampler>(train_set_->size(), world_, rank_,
                                                  /*shuffle=*/true, cfg_.seed, /*drop_last=*/false);
  loader_ = std::make_unique<DataLoader>(*train_set_, *sampler_, cfg_.batch_size, cfg_.prefetch,
                                         /*pin_memory=*/cfg_.device.is_cuda(), cfg_.num_workers);
  DP_CHECK(loader_->batches_per_epoch() >= cfg_.grad_accum,
           "--grad-accum {} needs at least that many batches per epoch, but each rank gets only {} "
           "batch(es) of {} from {} samples",
           cfg_.grad_accum, loader_->batches_per_epoch(), cfg_.batch_size, train_set_->size());

  BuiltModel built = entry_->build(make_model_args(*entry_, cfg_.model_options, shape, cfg_.seed));
  model_ = std::move(built.module);
  params_ = model_->parameters();
  buffers_ = model_->buffers();
  model_description_ = std::move(built.description);
  // Initialised on the host (the same numbers on every device), then moved: before the
  // optimizer, whose state follows its parameters' device.
  if (cfg_.device.is_cuda()) model_->to(cfg_.device);
  model_->set_compute_dtype(cfg_.precision == "bf16" ? DType::bf16 : DType::f32);
  // On the device, before the optimizer state and the Reducer's buckets are laid out like it.
  if (cfg_.param_arena) arena_ = std::make_unique<ParameterArena>(parameters());
  loss_fn_ = std::make_unique<SoftmaxCrossEntropy>();
  optimizer_ = make_optimizer(cfg_, parameters(), arena_.get());
  schedule_ = make_schedule(cfg_, steps_per_epoch());
  // Rank 0 writes every output file: check their paths now, not after the run.
  if (rank_ == 0) {
    check_training_paths(cfg_);
    if (!cfg_.dump_params.empty()) check_output_path("--dump-params", cfg_.dump_params);
    if (!cfg_.trace.empty()) check_output_path("--trace", cfg_.trace);
    if (!cfg_.log_json.empty()) check_output_path("--log-json", cfg_.log_json);
    if (!cfg_.gemm_profile.empty()) check_output_path("--gemm-profile", cfg_.gemm_profile);
    if (!cfg_.profile_out.empty()) check_output_path("--profile-out", cfg_.profile_out);
    if (!cfg_.checkpoint_dir.empty() && cfg_.eval_only) {
      // Evaluation reads a checkpoint and writes none: a mistyped directory is an error, not
      // an empty one made here.
      DP_CHECK(cfg_.resume != "auto" || std::filesystem::is_directory(cfg_.checkpoint_dir),
               "--eval-only --resume auto: --checkpoint-dir {} is not a directory",
               cfg_.checkpoint_dir);
    } else if (!cfg_.checkpoint_dir.empty()) {
      refuse_unexpanded_home("--checkpoint-dir", cfg_.checkpoint_dir);
      std::error_code ec;
      std::filesystem::create_directories(cfg_.checkpoint_dir, ec);
      DP_CHECK(std::filesystem::is_directory(cfg_.checkpoint_dir),
               "--checkpoint-dir {}: cannot create the directory{}", cfg_.checkpoint_dir,
               ec ? ": " + ec.message() : "");
      check_output_path("--checkpoint-dir", checkpoint_path(cfg_.checkpoint_dir, 0));
      checkpoint_lock_ = std::make_unique<CheckpointDirLock>(cfg_.checkpoint_dir);
      const std::vector<CheckpointEntry> earlier = list_checkpoints(cfg_.checkpoint_dir);
      if (cfg_.resume.empty() && !earlier.empty()) {
        log::warn(
            "--checkpoint-dir {} already holds {} checkpoint(s) (the newest at step {}) and this "
            "run starts from step 0 without --resume: it replaces them as it reaches their "
            "steps; --resume auto would continue from the newest",
            cfg_.checkpoint_dir, earlier.size(), earlier.front().step);
      }
    }
  }
  // A resumed run continues the log of the run it resumes.
  if (rank_ == 0 && !cfg_.log_json.empty()) log_ = JsonLog(cfg_.log_json, !cfg_.resume.empty());
}

Trainer::~Trainer() = default;

const Tensor& Trainer::loss_targets(const Tensor& y) {
  if (y.ndim() == 1) return y;
  targets_ = y.reshape({static_cast<int64_t>(y.numel())});
  return targets_;
}

size_t Trainer::steps_per_epoch() const {
  return loader_->batches_per_epoch() / cfg_.grad_accum;
}

size_t Trainer::rank_batch() const {
  return batch_in_use(cfg_.batch_size, loader_->sampler().num_samples());
}

void Trainer::flush_log() noexcept {
  try {
    log_.flush();
  } catch (const std::exception&) {
    // The job is being aborted for another error, which is what it reports.
  }
}

uint64_t Trainer::total_steps() const {
  return run_total_steps(cfg_, steps_per_epoch());
}

std::chrono::milliseconds Trainer::timeout() const {
  return std::chrono::milliseconds(static_cast<int64_t>(cfg_.timeout_s * 1000));
}

std::string Trainer::peers_text() const {
  if (peers_.size() != size_t(world_) || world_ < 2) return "no peer to check";
  return check_peers(peers_, rank_).text;
}

void Trainer::connect(ProcessGroup& pg) {
  DP_CHECK(pg.size() == world_ && pg.rank() == rank_,
           "process group is rank {} of {}, trainer {} of {}", pg.rank(), pg.size(), rank_, world_);
  pg_ = &pg;
  verify_settings_match(collective_settings(cfg_, *train_set_, test_set_.get()), pg, timeout());
  ReducerOptions ro;
  ro.first_bucket_mb = cfg_.first_bucket_mb;
  ro.bucket_cap_mb = cfg_.bucket_cap_mb;
  ro.overlap = cfg_.overlap;
  ro.find_unused_parameters = cfg_.find_unused_parameters;
  ro.timeout = timeout();
  ro.comm_hook = parse_comm_hook(cfg_.comm_hook);
  ro.arena = arena_.get();
  if (!cfg_.resume.empty()) ro.assignment = resume_from_checkpoint();
  reducer_ = std::make_unique<Reducer>(parameters(), pg, ro);
  reducer_->set_step(step_);
  if (cfg_.first_bucket_auto || cfg_.bucket_cap_auto || !cfg_.profile_out.empty()) {
    BucketTuningOptions bt;
    // A checkpoint's buckets chosen automatically by the run that wrote it are kept; one
    // written before that choice holds the fixed caps' buckets: this run chooses.
    const bool choose = ro.assignment.empty() || resumed_auto_pending_;
    bt.auto_first = cfg_.first_bucket_auto && choose;
    bt.auto_cap = cfg_.bucket_cap_auto && choose;
    bt.first_mb = cfg_.first_bucket_mb;
    bt.cap_mb = cfg_.bucket_cap_mb;
    bt.profile_out = cfg_.profile_out;
    bt.start_step = step_;
    bt.overlap = cfg_.overlap;
    bt.wire_ratio = ro.comm_hook == CommHook::none ? 1.0 : 0.5;
    bt.quiet = cfg_.quiet;
    bt.timeout = timeout();
    bt.link_burst_bytes = link_burst_from_env();
    bt.model = model_description_;
    bt.batch_size = rank_batch();
    bt.grad_accum = cfg_.grad_accum;
    tuner_ = std::make_unique<BucketTuner>(bt, *reducer_, pg, &log_);
  }
  buffer_sync_ = std::make_unique<BufferSync>(buffers(), pg, timeout());
  if (resumed_ && !cfg_.eval_only && world_ > 1) {
    // The Reducer and BufferSync carried rank 0's parameters and buffers; the optimizer's
    // state is the rest of the replica.
    for (auto& [name, t] : optimizer_->state_tensors())
      pg.broadcast(*t, 0, "optimizer state " + name + " (resume)")->wait(timeout());
  }
  if (cfg_.sync_batchnorm) {
    sync_batchnorm_layers_ = enable_sync_batchnorm(*model_, [this](Tensor& sums) {
      pg_->allreduce(sums, ReduceOp::sum, "sync batchnorm")->wait(timeout());
    });
  }
  // From the group, like the buckets: on one node the per-step loss average then goes
  // through shared memory too instead of a separate MPI call. Always host memory: the loss
  // is a host float, and the backends stage a CPU tensor where they need to.
  // [loss, stop]: stop > 0 when some rank got a preemption signal (no extra collective).
  loss_buf_ = pg.allocate(2).reshape({2});
}

std::vector<std::vector<size_t>> Trainer::resume_from_checkpoint() {
  // Rank 0's verdict travels to every rank: "fresh", "ok\n<path>\n<layout>\n<meta json>" or
  // "error\n<message>". Only rank 0 reads the file: the other ranks' copy may not exist
  // (a node-local disk), and the broadcasts that follow give them the same values anyway.
  std::string verdict;
  if (rank_ == 0) {
    try {
      std::string path = cfg_.resume;
      if (cfg_.resume == "auto") {
        // Evaluation only reads: it leaves even a dead writer's temporary to the training.
        ResumeChoice choice = choose_checkpoint(cfg_.checkpoint_dir, !cfg_.eval_only);
        for (const std::string& why : choice.skipped) log::warn("--resume auto: skipped {}", why);
        path = choice.path;
      }
      if (path.empty()) {
        verdict = "fresh";
      } else {
        CheckpointReader reader(path);
        reader.verify();
        const CheckpointMeta meta = read_checkpoint_meta(reader);
        ResumeTarget target;
        target.settings = collective_settings(cfg_, *train_set_, test_set_.get());
        target.model_keys.push_back("--model");
        for (const ModelOption& o : entry_->options) target.model_keys.push_back("--" + o.name);
        target.world_size = world_;
        target.batch_size = cfg_.batch_size;
        target.grad_accum = cfg_.grad_accum;
        target.steps_per_epoch = steps_per_epoch();
        target.eval_only = cfg_.eval_only;
        target.batchnorm = count_batchnorm(*model_) > 0;
        target.sync_batchnorm = cfg_.sync_batchnorm;
        const ResumeVerdict v = check_resume(meta, target, path);
        if (!v.error.empty()) fail("{}", v.error);
        for (const std::string& note : v.notes) log::warn("--resume: {}", note);
        load_checkpoint_tensors(reader, parameters(), buffers(),
                                cfg_.eval_only ? nullptr : optimizer_.get());
        // The path goes with its length: a directory's name may hold a newline.
        verdict = fmt::format("ok\n{}\n{}{}\n{}", path.size(), path, v.same_layout ? 1 : 0,
                              reader.read_text("meta"));
      }
    } catch (const std::exception& e) {
      verdict = fmt::format("error\n{}", e.what());
    }
  }
  if (world_ > 1) verdict = allgather_strings(*pg_, verdict, timeout(), "resume").at(0);
  if (verdict == "fresh") {
    // Every rank got the same verdict: all fail alike. Evaluating a fresh initialisation
    // instead would report chance-level figures as the model's.
    if (cfg_.eval_only)
      throw CollectiveError(fmt::format(
          "--eval-only --resume auto: no checkpoint in --checkpoint-dir {} (nothing to evaluate)",
          cfg_.checkpoint_dir));
    if (rank_ == 0 && !cfg_.quiet)
      log::rank0("--resume auto: no checkpoint in {}: starting from step 0", cfg_.checkpoint_dir);
    // The log is opened for appending (a resumed run continues it): without the marker a
    // fresh start's steps 1, 2, ... would follow an earlier run's, indistinguishable.
    if (log_.is_open())
      log_.write({{"type", "resume"}, {"step", 0}, {"purge_step", 1}, {"checkpoint", nullptr}});
    return {};
  }
  auto next_line = [&verdict](size_t& pos) {
    const size_t end = verdict.find('\n', pos);
    std::string line = verdict.substr(pos, end - pos);
    pos = end == std::string::npos ? verdict.size() : end + 1;
    return line;
  };
  size_t pos = 0;
  if (next_line(pos) == "error")
    throw CollectiveError(fmt::format("rank 0 cannot resume: {}", verdict.substr(pos)));
  const size_t path_size = std::stoul(next_line(pos));
  const std::string path = verdict.substr(pos, path_size);
  pos += path_size;
  const bool same_layout = next_line(pos) == "1";
  const CheckpointMeta meta = parse_checkpoint_meta(verdict.substr(pos), path);
  if (rank_ != 0 && !cfg_.eval_only) optimizer_->set_steps(meta.optimizer_steps);
  start_ = meta.progress;
  step_ = start_.step;
  if (!cfg_.eval_only && start_.step > total_steps())
    throw CollectiveError(fmt::format(
        "--resume {}: the checkpoint is at step {}, past this run's end at step {} (--steps and "
        "--epochs may only grow when resuming)",
        path, start_.step, total_steps()));
  last_eval_step_ = start_.last_eval_step;
  last_epoch_loss_ = start_.last_epoch_loss;
  skipped_steps_ = start_.skipped_steps;
  resumed_ = true;
  if (rank_ == 0 && !cfg_.quiet)
    log::rank0("resumed from {} (step {}, epoch {}, written by {} rank(s))", path, start_.step,
               start_.epoch + 1, meta.world_size);
  // The log continues the resumed run's; steps after its checkpoint that a crash left there
  // are redone: the marker tells readers that later lines replace them. Evaluating a
  // checkpoint (--eval-only) replaces nothing.
  if (log_.is_open() && !cfg_.eval_only)
    log_.write({{"type", "resume"},
                {"step", start_.step},
                // TensorBoard's SummaryWriter(purge_step=): records from this step on are
                // replaced (the checkpoint's own step stays).
                {"purge_step", start_.step + 1},
                {"checkpoint", path}});
  const bool layout_fits = same_layout && !meta.buckets.empty() && [&] {
    size_t n = 0;
    for (const auto& b : meta.buckets) n += b.size();
    return n == parameters().size();
  }();
  resumed_auto_pending_ = meta.buckets_auto_pending;
  return layout_fits ? meta.buckets : std::vector<std::vector<size_t>>{};
}

void Trainer::save_checkpoint(uint64_t epoch, uint64_t step_in_epoch, const EpochLoss& loss) {
  const std::string path = checkpoint_path(cfg_.checkpoint_dir, step_);
  std::string verdict = "ok";
  double write_s = -1;  // rank 0's write, once done
  if (rank_ == 0) {
    try {
      CheckpointMeta meta;
      meta.progress.step = step_;
      meta.progress.epoch = epoch;
      meta.progress.step_in_epoch = step_in_epoch;
      meta.progress.epoch_loss_sum = loss.sum;
      meta.progress.epoch_skipped_steps = loss.skipped;
      meta.progress.last_eval_step = last_eval_step_;
      meta.progress.skipped_steps = skipped_steps_;
      meta.progress.last_epoch_loss = last_epoch_loss_;
      meta.progress.outputs_pending = stop_signal_ != 0;
      meta.progress.wall_s = (now_us() - wall_start_us_) / 1e6;
      meta.world_size = world_;
      meta.batch_size = cfg_.batch_size;
      meta.grad_accum = cfg_.grad_accum;
      meta.steps_per_epoch = steps_per_epoch();
      meta.seed = cfg_.seed;
      meta.model = cfg_.model;
      meta.optimizer = optimizer_->kind();
      meta.settings = collective_settings(cfg_, *train_set_, test_set_.get());
      meta.buckets = reducer_->assignment();
      meta.buckets_auto_pending = tuner_ && tuner_->choice_pending();
      meta.dprun_version = dprun_version();
      const double t0 = now_us();
      std::unique_lock<std::mutex> writing;  // a checkpoint is complete or never started
      if (watch_) writing = std::unique_lock<std::mutex>(watch_->write_lock());
      fault_.maybe_stall_at(rank_, "checkpoint");
      const uint64_t bytes = write_checkpoint(path, meta, parameters(), buffers(), *optimizer_);
      const double secs = (now_us() - t0) / 1e6;
      write_s = secs;
      const PruneResult pruned =
          prune_checkpoints(cfg_.checkpoint_dir, cfg_.keep_checkpoints, step_);
      const std::vector<std::string>& removed = pruned.removed;
      if (!pruned.later.empty() && !warned_later_checkpoints_) {
        warned_later_checkpoints_ = true;
        log::warn(
            "--keep-checkpoints: {} holds {} checkpoint(s) of later steps than this run's step "
            "{} ({}{}): not this run's history (an earlier --resume FILE, or damaged ones "
            "--resume auto passed over); left in place and not counted. --resume auto takes "
            "the newest that verifies: remove them if this run is the one to continue",
            cfg_.checkpoint_dir, pruned.later.size(), step_, pruned.later.front(),
            pruned.later.size() > 1 ? ", ..." : "");
      }
      if (!cfg_.quiet)
        log::rank0("checkpoint {}: {:.1f} MB in {:.2f} s ({:.0f} MB/s){}", path,
                   bytes_to_mb(double(bytes)), secs,
                   bytes_to_mb(double(bytes)) / std::max(secs, 1e-9),
                   removed.empty() ? "" : fmt::format(", removed {} older", removed.size()));
      if (log_.is_open()) {
        try {
          log_.write({{"type", "checkpoint"},
                      {"step", step_},
                      {"path", path},
                      {"bytes", bytes},
                      {"write_s", secs}});
        } catch (const std::exception& e) {
          // The checkpoint is on disk: the error must not say it is not.
          verdict = fmt::format("{}checkpoint {} was written, but {}", kLogFailed, path, e.what());
        }
      }
    } catch (const std::exception& e) {
      verdict = e.what();
    }
  }
  if (world_ > 1) {
    try {
      verdict = allgather_strings(*pg_, verdict, timeout(), "checkpoint").at(0);
    } catch (const CollectiveTimeout& e) {
      // Say what was waited for: the bare collective named neither the checkpoint nor the
      // cure. The collective's own text still names the rank that did not arrive.
      const std::string writer =
          peers_.empty() ? std::string("rank 0")
                         : fmt::format("rank 0 (pid {} on {})", peers_[0].pid, peers_[0].host);
      const std::string done =
          write_s >= 0 ? fmt::format(" (this rank wrote it in {:.2f} s)", write_s) : "";
      throw CollectiveTimeout(fmt::format(
          "step {}: the wait for checkpoint {}{} timed out: {} writes it while the other ranks "
          "wait for its verdict, for at most --timeout ({} s); a write that takes longer (slow "
          "or busy storage) fails the job, so raise --timeout above the write time. {}",
          step_, path, done, writer, double(timeout().count()) / 1000.0, e.what()));
    }
  }
  if (verdict.rfind(kLogFailed, 0) == 0)
    throw CollectiveError(
        fmt::format("step {}: rank 0: {}", step_, verdict.substr(std::strlen(kLogFailed))));
  if (verdict != "ok")
    throw CollectiveError(
        fmt::format("step {}: rank 0 could not write the checkpoint: {}", step_, verdict));
  last_checkpoint_step_ = step_;
  last_checkpoint_ = path;
}

const Tensor& Trainer::on_device(const Tensor& host, size_t k, int which) {
  if (!cfg_.device.is_cuda()) return host;  // the CPU path: the loader's tensor itself
  // Two buffers per input, used in turn, reallocated only when the shape changes (the last
  // batch of an epoch): copies and kernels are ordered on the compute stream, and the
  // alternation keeps a buffer from being rewritten while the micro-batch before still
  // uses it even if copies move to a stream of their own. The host batch is pinned (the
  // loader's pin_memory), so the copy is asynchronous: it is complete before the loader may
  // refill that buffer because every micro-batch synchronises on its loss before the next
  // next() call.
  Tensor& buf = device_batch_[size_t(which)][k % 2];
  ensure_like(buf, host, host.dtype(), cfg_.device);
  buf.copy_(host);
  return buf;
}

void Trainer::train_step(uint64_t epoch, StepMetrics& m) {
  const size_t K = cfg_.grad_accum;
  const bool trace = timeline_.recording(step_ + 1);
  const double t_step = now_us();
  double data_us = 0, fwd_us = 0, bwd_us = 0;
  double bwd_end = 0;
  double bwd_start = 0, finish_end = 0;  // of the synchronising micro-batch
  float loss_sum = 0;
  // This rank's; every rank's epoch has the same (the sampler pads it). Each micro-batch's
  // loss is a mean over its rows; weighting it by its share of the step's rows makes the
  // accumulated gradient (and the logged loss) the mean over all of them, as one large batch
  // would give, also when the epoch's short last batch is one.
  const size_t rows = loader_->rows_in_next(K);
  reducer_->zero_grad();
  // A step skipped for a non-finite gradient must leave the model as it was, buffers too:
  // forward already moved BatchNorm's running statistics (with the NaN batch, NaN).
  const bool may_skip = cfg_.on_nonfinite == "skip";
  if (may_skip) buffer_snapshot_.save(buffers());
  for (size_t k = 0; k < K; ++k) {
    double t0 = now_us();
    const Batch* batch = loader_->next();
    DP_CHECK(batch != nullptr, "internal: the data loader ran out of batches mid-step");
    const float weight = static_cast<float>(batch->size) / static_cast<float>(rows);
    double t1 = now_us();
    fault_.maybe_poison(rank_, step_ + 1, batch->x);
    const Tensor& x = on_device(batch->x, k, 0);
    const Tensor& y = on_device(batch->y, k, 1);
    if (cfg_.broadcast_buffers) buffer_sync_->broadcast("before forward");
    reducer_->prepare_for_backward(/*sync=*/k + 1 == K);
    const Tensor& logits = model_->forward(x);
    loss_sum += weight * loss_fn_->forward(logits, loss_targets(y));
    double t2 = now_us();
    if (k + 1 == K) {
      // The step's loss: all-reduced (with the stop flag) once the buckets are in flight.
      loss_buf_.f32()[0] = loss_sum;
    }
    if (k == 0) fault_.maybe_signal(rank_, step_ + 1);
    fault_.maybe_stall(rank_, step_ + 1);
    model_->backward(loss_fn_->backward(weight));
    double t3 = now_us();
    reducer_->finish(t3);
    bwd_end = t3;
    if (k + 1 == K) bwd_start = t2, finish_end = now_us();
    data_us += t1 - t0;
    fwd_us += t2 - t1;
    bwd_us += t3 - t2;
    if (trace) {
      timeline_.span(Timeline::kCompute, "data", t0, t1, step_ + 1);
      timeline_.span(Timeline::kCompute, "forward", t1, t2, step_ + 1);
      timeline_.span(Timeline::kCompute, "backward", t2, t3, step_ + 1);
      if (k + 1 == K) timeline_.span(Timeline::kCompute, "wait comm", t3, now_us(), step_ + 1);
    }
  }
  // A preemption signal received by now stops every rank after this step: the flag is
  // averaged with the loss, so all ranks see the same verdict.
  const int signal = preemption_signal();
  loss_buf_.f32()[1] = signal != 0 ? 1.0f : 0.0f;
  WorkPtr loss_work = pg_->allreduce(loss_buf_, ReduceOp::avg, "step loss");

  const double t_opt = now_us();
  // Every rank holds the same averaged gradients, so every rank reaches the same verdict.
  const double norm = cfg_.clip_grad_norm > 0
                          ? clip_grad_norm(optimizer_->params(), cfg_.clip_grad_norm, arena_.get())
                          : grad_norm(optimizer_->params(), arena_.get());
  std::string nonfinite;
  float bad = 0;
  if (!std::isfinite(norm)) nonfinite = first_nonfinite_grad(optimizer_->params(), &bad);
  const float lr = schedule_->lr(static_cast<int64_t>(step_));
  if (nonfinite.empty()) optimizer_->step(lr);
  const double t_end = now_us();
  // After a signal, peers that are alive reach this point within moments (they finished
  // the same gradient all-reduces): a peer that does not is gone, and no checkpoint can be
  // agreed on. mpirun sends SIGTERM to the survivors of a rank killed with -9.
  const auto deadline =
      signal != 0 ? std::min(timeout(), std::chrono::milliseconds(10000)) : timeout();
  try {
    loss_work->wait(deadline);
  } catch (const Error& e) {
    if (signal != 0)
      fail(
          "step {}: got {}, but not every rank reached the end of the step (a peer is gone: "
          "killed, or its node lost): exiting without a checkpoint; the last one written stays "
          "valid; {} ({})",
          step_ + 1, signal_name(signal), peers_text(), e.what());
    fail("step {}: the step-loss all-reduce: {}; {}", step_ + 1, e.what(), peers_text());
  }
  ++step_;
  if (loss_buf_.f32()[1] > 0) {
    stop_signal_ = signal != 0 ? signal : -1;
    if (watch_) watch_->agreed();  // every rank is here: the checkpoint can be agreed on
  }
  if (!nonfinite.empty()) {
    if (cfg_.on_nonfinite == "abort")
      throw CollectiveError(fmt::format(
          "step {}: the averaged gradient of '{}' has a non-finite value ({}): training "
          "diverged (lower --lr, add --clip-grad-norm, or --on-nonfinite skip to skip such steps)",
          step_, nonfinite, bad));
    ++skipped_steps_;
    if (may_skip) buffer_snapshot_.restore();
    if (rank_ == 0)
      log::warn(
          "step {}: skipped (no update): the averaged gradient of '{}' is {} "
          "(--on-nonfinite skip; {} step(s) skipped so far)",
          step_, nonfinite, bad, skipped_steps_);
  }

  const CommStats& cs = reducer_->last_stats();
  if (trace) {
    timeline_.span(Timeline::kCompute, "optimizer", t_opt, t_end, step_);
    for (const BucketSpan& s : cs.spans) {
      timeline_.span(
          Timeline::kComm, fmt::format("allreduce bucket {}", s.bucket), s.start_us, s.end_us,
          step_,
          fmt::format(R"("bucket":{},"bytes":{},"ready_us":{:.3f},"backward_end_us":{:.3f})",
                      s.bucket, s.bytes, timeline_.trace_us(s.ready_us),
                      timeline_.trace_us(cs.backward_end_us)));
    }
  }
  const double step_us = t_end - t_step;
  m.step = step_;
  m.epoch = epoch;
  m.loss = loss_buf_.f32()[0];
  m.lr = lr;
  m.grad_norm = norm;
  m.step_ms = step_us / 1000.0;
  m.samples = uint64_t(rows) * uint64_t(world_);
  m.samples_per_s = double(m.samples) / (step_us / 1e6);
  m.tokens_per_s = m.samples_per_s * double(sequence_length_);
  m.data_ms = data_us / 1000.0;
  m.forward_ms = fwd_us / 1000.0;
  m.backward_ms = bwd_us / 1000.0;
  m.optimizer_ms = (t_end - t_opt) / 1000.0;
  m.comm_ms = cs.total_us / 1000.0;
  m.exposed_comm_ms = cs.exposed_us / 1000.0;
  m.other_wait_ms = cs.other_wait_us() / 1000.0;
  m.overlap = cs.overlap();
  m.skipped = !nonfinite.empty();
  if (tuner_ && tuner_->profiling(step_)) {
    // Backward's wall-clock end, not the Reducer's compute end: the simulation predicts the
    // step's wall time, and a backward slowed by the communication thread is what it takes.
    StepSample s;
    s.pre_backward_us = bwd_start - t_step;
    s.backward_us = bwd_end - bwd_start;
    s.wait_us = finish_end - bwd_end;
    s.post_backward_us = t_end - finish_end;
    s.data_us = data_us;
    s.forward_us = fwd_us;
    s.optimizer_us = t_end - t_opt;
    for (double t : reducer_->param_ready_us()) s.ready_us.push_back(t - bwd_start);
    for (const BucketSpan& b : cs.spans)
      s.spans.push_back(
          {double(b.bytes), b.start_us - bwd_start, b.end_us - bwd_start, bwd_end - bwd_start});
    tuner_->add_sample(std::move(s));
  }
}

EvalResult Trainer::evaluate() {
  DP_CHECK(pg_ != nullptr, "evaluate() before connect()");
  // Exact sharding: every test sample is counted once, on exactly one rank.
  DistributedSampler shard = DistributedSampler::exact(test_set_->size(), world_, rank_);
  size_t eval_batch = cfg_.eval_batch_size ? cfg_.eval_batch_size : cfg_.batch_size;
  DataLoader loader(*test_set_, shard, eval_batch, /*prefetch=*/cfg_.prefetch,
                    /*pin_memory=*/false, cfg_.num_workers);
  loader.start_epoch(0);
  SoftmaxCrossEntropy loss_fn("eval loss");
  // The training loss's [B, C] buffer is idle until the next step: freed, not held beside the
  // evaluation's (785 MiB each for GPT-2's vocabulary at 4 x 1024 tokens).
  loss_fn_->release_buffers();
  // Every rank evaluates with rank 0's buffers (its own running statistics drifted by its
  // own batches since the last broadcast), in evaluation mode: running statistics are read,
  // never written.
  if (cfg_.broadcast_buffers) buffer_sync_->broadcast("before evaluation");
  model_->eval();
  double loss_sum = 0, correct = 0, count = 0;
  size_t k = 0;
  while (const Batch* b = loader.next()) {
    if (cfg_.eval_batches > 0 && k >= cfg_.eval_batches) break;
    const Tensor& x = on_device(b->x, k, 0);
    const Tensor& y = on_device(b->y, k++, 1);
    const double targets = double(y.numel());
    loss_sum += double(loss_fn.forward(model_->forward(x), loss_targets(y))) * targets;
    correct += double(loss_fn.correct());
    count += targets;
  }
  model_->train();
  // Counts in int32 (a language model's validation set counts tokens: float32 would round
  // them above 2^24); the loss sum in float32, divided by the count anyway.
  Tensor loss_total = Tensor::from_vector({1}, std::vector<float>{float(loss_sum)});
  Tensor counts = Tensor::from_vector({2}, std::vector<int32_t>{int32_t(correct), int32_t(count)});
  WorkPtr loss_work = pg_->allreduce(loss_total, ReduceOp::sum, "eval loss total");
  pg_->allreduce(counts, ReduceOp::sum, "eval counts")->wait(timeout());
  loss_work->wait(timeout());
  const int32_t* c = counts.data<int32_t>();
  EvalResult r;
  r.samples = static_cast<size_t>(c[1]);
  r.tokens = entry_->loss == LossKind::next_token;
  r.loss = c[1] > 0 ? loss_total.f32()[0] / float(c[1]) : 0;
  r.accuracy = c[1] > 0 ? double(c[0]) / double(c[1]) : 0;  // exact, as --mode dp gives it
  return r;
}

void Trainer::print_header() {
  std::string where =
      fmt::format("{} cpu (OpenBLAS {}{}, {})", host_name(), openblas_get_corename(),
                  std::getenv("DPRUN_OPENBLAS_REEXEC") != nullptr
                      ? fmt::format(", chosen over {}", std::getenv("DPRUN_OPENBLAS_REEXEC"))
                      : "",
                  describe_blas_threads());
  if (cfg_.device.is_cuda()) {
    GpuInfo gpu = cuda_device_info(cfg_.device.index);
    where = fmt::format("{} {} ({}, {:.1f} GiB)", host_name(), cfg_.device.str(), gpu.name,
                        double(gpu.total_memory) / double(1ull << 30));
  }
  // Each rank's host and pid travel along, for the survivors of a killed rank (peer_watch.h).
  const std::vector<std::vector<std::string>> lines =
      allgather_lines(*pg_, {where, host_name(), std::to_string(::getpid()), this_pid_space()},
                      timeout(), "header");
  std::vector<std::string> per_rank;
  peers_.clear();
  for (const auto& l : lines) {
    per_rank.push_back(l.at(0));
    peers_.push_back({l.at(1), std::stoll(l.at(2)), l.at(3)});
  }
  if (log_.is_open() && !cfg_.eval_only) {
    RunShape shape;
    shape.world_size = size_t(world_);
    shape.backend = pg_->backend();
    shape.parameters = count_params(parameters());
    shape.batch = rank_batch();
    shape.steps_per_epoch = steps_per_epoch();
    shape.total_steps = total_steps();
    shape.optimizer = optimizer_->describe();
    shape.schedule = schedule_->describe();
    shape.sequence_length = sequence_length_;
    log_.write(run_record(cfg_, shape));
  }
  if (rank_ != 0 || cfg_.quiet) return;
  HeaderInfo h;
  h.world = world_;
  h.backend = pg_->backend();
  h.algorithm = pg_->algorithm();
  h.devices = per_rank;
  const size_t nbuf = [&] {
    size_t n = 0;
    for (const Buffer* b : buffers()) n += b->value.numel();
    return n;
  }();
  h.model = fmt::format(
      "{} ({} parameters{}), {}", model_description_, count_params(parameters()),
      nbuf ? fmt::format(", {} buffer values{}", nbuf,
                         cfg_.broadcast_buffers ? " broadcast from rank 0 every forward" : "")
           : "",
      cfg_.precision == "bf16" ? "bf16 mixed precision (float32 master weights)" : "float32");
  if (cfg_.sync_batchnorm)
    h.model +=
        fmt::format(", {} BatchNorm layer(s) synchronised over the ranks", sync_batchnorm_layers_);
  h.data = fmt::format("{} | {}: {}", train_set_->describe(),
                       entry_->loss == LossKind::next_token ? "validation" : "test",
                       test_set_ ? test_set_->describe() : "none");
  h.sequence_length = sequence_length_;
  h.batch_size = cfg_.batch_size;
  h.shard_samples = loader_->sampler().num_samples();
  h.grad_accum = cfg_.grad_accum;
  h.optimizer = optimizer_->describe();
  h.schedule = schedule_->describe();
  h.clip_grad_norm = cfg_.clip_grad_norm;
  h.buckets = reducer_->layout();
  if (tuner_ && tuner_->auto_buckets())
    h.buckets += fmt::format("\n    (auto: until the profile of steps {}-{} chooses the caps)",
                             tuner_->first_profiled_step(), tuner_->last_profiled_step());
  h.overlap = cfg_.overlap;
  h.steps_per_epoch = steps_per_epoch();
  print_header_lines(h);
}

void Trainer::periodic_outputs(uint64_t epoch, uint64_t total_steps, TrainSummary& sum,
                               bool sample) {
  const bool last = step_ == total_steps;
  if (cfg_.eval_every > 0 && (step_ % cfg_.eval_every == 0 || last) && last_eval_step_ != step_)
    evaluate_and_log(epoch, sum);
  if (sample && cfg_.sample_every > 0 && (step_ % cfg_.sample_every == 0 || last))
    sample_and_print();
}

void Trainer::sample_and_print() {
  // Every rank samples (the same tokens: the same replica and seed), as llm.c does, so that
  // no rank waits out rank 0's whole generation in the next collective. The ranks still
  // finish apart by whatever CPU each got, a drift that grows with the sample (CI saw 0.5 s
  // on a 9 s sample). So a barrier ends the sample, allowing --timeout plus this rank's own
  // sampling time: a sample longer than --timeout is no hang, and a rank that is stuck or
  // never samples still times out, by name, here.
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  const auto start = std::chrono::steady_clock::now();
  fault_.maybe_stall_at(rank_, "sample");
  const std::string text = sample_text(*entry_, *model_, train_set_->num_classes(), cfg_, step_);
  if (rank_ == 0) log::rank0("sample at step {}:\n{}\n---", step_, text);
  const milliseconds allowed =
      timeout() + duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  pg_->barrier(fmt::format("end of the sample at step {}", step_), allowed)->wait(allowed);
}

void Trainer::evaluate_and_log(uint64_t epoch, TrainSummary& sum) {
  sum.eval = evaluate();
  sum.evaluated = true;
  last_eval_step_ = step_;
  if (log_.is_open()) {
    log_.write({{"type", "eval"},
                {"step", step_},
                {"epoch", epoch},
                {"test_loss", sum.eval.loss},
                {"test_accuracy", sum.eval.accuracy},
                {"test_samples", sum.eval.samples}});
  }
  if (rank_ == 0 && !cfg_.quiet && cfg_.eval_every > 0)
    log_eval(step_, sum.eval, entry_->loss == LossKind::next_token);
}

TrainSummary Trainer::run_eval_only() {
  TrainSummary sum;
  sum.steps = step_;
  if (cfg_.eval || cfg_.eval_every > 0) {
    sum.eval = evaluate();
    sum.evaluated = true;
    if (rank_ == 0 && !cfg_.quiet) log_eval(step_, sum.eval, entry_->loss == LossKind::next_token);
    if (log_.is_open())
      log_.write({{"type", "eval"},
                  {"step", step_},
                  {"epoch", start_.epoch},  // the checkpoint's: the epoch its last step is in
                  {"test_loss", sum.eval.loss},
                  {"test_accuracy", sum.eval.accuracy},
                  {"test_samples", sum.eval.samples}});
  }
  if (cfg_.sample_every > 0) {
    sample_and_print();  // on every rank, as in training; its barrier ends the evaluation
  } else {
    pg_->barrier("end of evaluation")->wait(timeout());
  }
  return sum;
}

Trainer::BucketMembers Trainer::bucket_members(const Reducer& r) {
  BucketMembers m = r.assignment();
  for (auto& b : m) std::sort(b.begin(), b.end());  // the order inside a bucket is no change
  return m;
}

void Trainer::say_rebuilt_buckets(const BucketMembers& before) {
  if (rank_ != 0 || bucket_members(*reducer_) == before) return;
  const std::string now = reducer_->layout();
  if (!cfg_.quiet)
    log::rank0("buckets rebuilt from step {} in the order the gradients arrived: {}", step_, now);
  if (log_.is_open()) log_.write({{"type", "buckets"}, {"step", step_}, {"layout", now}});
}

TrainSummary Trainer::run() {
  DP_CHECK(pg_ != nullptr, "run() before connect()");
  print_header();
  if (tuner_) {
    std::set<std::string> hosts;
    for (const PeerProcess& p : peers_) hosts.insert(p.host);
    tuner_->set_hosts(int(hosts.size()));
  }
  if (cfg_.eval_only) {
    uninstall_preemption_handlers();  // nothing to checkpoint: a signal ends it as usual
    return run_eval_only();
  }
  install_preemption_handlers(rank_);
  set_preemption_checkpointing(!cfg_.checkpoint_dir.empty());
  if (world_ > 1) {
    watch_ = std::make_unique<PeerWatch>(peers_, rank_, [this](const PeerVerdict& v) {
      // On the watch's thread, while the training thread may wait in a collective with the
      // gone peer: end the job from here (mpirun's SIGKILL follows its SIGTERM within 1 s).
      const std::string msg = fmt::format(
          "got {}, but {}: not checkpointing; exiting (the last checkpoint written stays "
          "valid){}",
          signal_name(preemption_signal()), v.gone, v.unknown.empty() ? "" : "; " + v.unknown);
      quiet_preemption_messages();  // mpirun's SIGTERM to the others is no preemption
      std::fprintf(stderr, "dprun: error: [rank %d] %s\n", rank_, msg.c_str());
      pg_->abort(msg);
      abort_job(1);
    });
  }
  pg_->barrier("start")->wait(timeout());
  // The Reducer rebuilds its buckets in the order the gradients arrived in this run's first
  // step (as DDP does), from its second on: the header showed the layout before.
  const BucketMembers header_buckets = rank_ == 0 ? bucket_members(*reducer_) : BucketMembers{};
  const double t_start = now_us();
  // wall_s goes on from the checkpoint's: one log of one training, however many runs.
  wall_start_us_ = t_start - start_.wall_s * 1e6;
  if (!cfg_.trace.empty())
    timeline_.start(Timeline::shared_origin(*pg_, t_start, timeout()), start_.step,
                    /*max_steps=*/20);

  TrainSummary sum;
  const uint64_t per_epoch = steps_per_epoch();
  const uint64_t total_steps = this->total_steps();
  Progress progress(total_steps, cfg_.log_interval, rank_ == 0 && !cfg_.quiet, sequence_length_,
                    start_.step);

  double train_us = 0, comm_us = 0, exposed_us = 0;
  uint64_t samples = 0;
  StepMetrics m;
  // A checkpoint written under a stop signal skipped the evaluation and sample due at its step
  // (the checkpoint came first): they run now, so the log has every one.
  if (resumed_ && step_ > 0)
    periodic_outputs(start_.epoch, total_steps, sum, /*sample=*/start_.outputs_pending);
  // --gemm-profile: this process's third step (past the first steps' allocations), or its
  // last when it runs fewer. It counted from step 0: a resumed run, or one of 1 or 2 steps,
  // wrote no file at all.
  const uint64_t gemm_step = start_.step + std::min<uint64_t>(3, total_steps - start_.step);
  bool gemm_profiled = false;
  // A resumed run starts inside the checkpoint's epoch, with the batches it had not seen.
  // A checkpoint written at the run's last step (a preemption then, or a finished run started
  // again) still enters its epoch once: the end-of-epoch evaluation it had not reached runs.
  for (uint64_t epoch = start_.epoch;
       (step_ < total_steps || (resumed_ && epoch == start_.epoch)) && !stop_signal_; ++epoch) {
    const uint64_t skip = epoch == start_.epoch ? start_.step_in_epoch : 0;
    loader_->start_epoch(epoch, skip * cfg_.grad_accum);
    EpochLoss epoch_loss;
    if (epoch == start_.epoch)
      epoch_loss = {start_.epoch_loss_sum, skip, skip > 0 ? start_.epoch_skipped_steps : 0};
    for (uint64_t s = skip; s < per_epoch && step_ < total_steps; ++s) {
      const bool profile = !cfg_.gemm_profile.empty() && rank_ == 0 && step_ + 1 == gemm_step;
      if (profile) gemm_profile_start();
      train_step(epoch, m);
      if (step_ == start_.step + 2) say_rebuilt_buckets(header_buckets);
      if (tuner_) tuner_->after_step(step_, m);  // collective after the profiled steps
      if (profile) {
        write_gemm_profile(cfg_.gemm_profile, gemm_profile_stop(), rank_batch() * cfg_.grad_accum);
        gemm_profiled = true;
      }
      m.wall_s = (now_us() - wall_start_us_) / 1e6;
      epoch_loss.add(m.loss, m.skipped);
      train_us += m.step_ms * 1000;
      comm_us += m.comm_ms * 1000;
      exposed_us += m.exposed_comm_ms * 1000;
      samples += m.samples;
      if (log_.is_open()) log_.write_step(m);
      // Every rank ends the traced steps together: the trace is written now, so that a run
      // that later fails (a divergence, a hang, a lost peer) or runs for days still has it.
      if (timeline_.complete_after(step_)) timeline_.write(*pg_, cfg_.trace, timeout());
      progress.step(m, epoch, (now_us() - t_start) / 1e6);
      if (!std::isfinite(m.loss) && cfg_.on_nonfinite == "abort") {
        // The loss is the all-reduced one: every rank sees it and stops here together.
        throw CollectiveError(fmt::format(
            "step {}: the loss is {} (training diverged: try a lower --lr)", m.step, m.loss));
      }
      // Under a stop signal (agreed by every rank in the step's loss all-reduce) the
      // checkpoint comes first: Slurm's grace period may not cover an evaluation over the
      // whole test split. The resumed run makes them up (outputs_pending).
      if (!stop_signal_) periodic_outputs(epoch, total_steps, sum, /*sample=*/true);
      const bool due = !cfg_.checkpoint_dir.empty() &&
                       ((cfg_.checkpoint_every > 0 && step_ % cfg_.checkpoint_every == 0) ||
                        step_ == total_steps || stop_signal_);
      if (due) save_checkpoint(epoch, s + 1, epoch_loss);
      if (stop_signal_) break;
    }
    sum.epochs = epoch + 1;
    if (stop_signal_) break;
    last_epoch_loss_ = epoch_loss.mean();
    sum.epoch_ended(epoch, epoch_loss.steps, per_epoch);
    if (cfg_.eval && last_eval_step_ != step_) evaluate_and_log(epoch, sum);
    progress.epoch_end(epoch, epoch_loss.steps, per_epoch, *last_epoch_loss_,
                       cfg_.eval ? &sum.eval : nullptr);
  }
  if (watch_) watch_->agreed();  // a peer that exits from here on has finished
  // Each rank's last forward moved its own buffers: leave every replica equal to rank 0's.
  if (cfg_.broadcast_buffers) buffer_sync_->broadcast("end of training");
  sum.steps = step_;
  sum.wall_s = (now_us() - wall_start_us_) / 1e6;  // like the steps' wall_s: the whole training
  sum.samples_per_s = train_us > 0 ? double(samples) / (train_us / 1e6) : 0;
  const uint64_t run_steps = step_ - start_.step;  // this process's steps (after a resume)
  sum.comm_ms = run_steps ? comm_us / 1000.0 / double(run_steps) : 0;
  sum.exposed_comm_ms = run_steps ? exposed_us / 1000.0 / double(run_steps) : 0;
  sum.overlap = comm_us > 0 ? std::max(0.0, 1.0 - exposed_us / comm_us) : 0;
  sum.peak_rss_mib = peak_rss_mib();
  sum.tokens_per_s = sum.samples_per_s * double(sequence_length_);
  sum.skipped_steps = skipped_steps_;
  sum.preempted_by = stop_signal_;
  sum.train_loss = last_epoch_loss_;  // in this run or before its checkpoint (a whole epoch)
  sum.checkpoint = last_checkpoint_;

  if (tuner_) tuner_->finish();  // collective when the run ended inside the profile
  // A run of fewer than the traced steps (or stopped by a signal before their end).
  if (!cfg_.trace.empty() && !timeline_.written()) timeline_.write(*pg_, cfg_.trace, timeout());
  // The stop flag may have come from a peer before this rank's own copy of the signal (a
  // launcher or Slurm signals every rank): name the signal this rank got when it got one.
  if (stop_signal_ == -1 && preemption_signal() != 0) stop_signal_ = preemption_signal();
  if (stop_signal_) {
    // Preempted: the parameters are not final (no --dump-params); the checkpoint is the result.
    const std::string by = stop_signal_ > 0
                               ? fmt::format("{} on rank {}", signal_name(stop_signal_), rank_)
                               : std::string("a signal on another rank");
    if (last_checkpoint_.empty())
      throw CollectiveError(fmt::format(
          "stopped by {} after step {}: no --checkpoint-dir, so nothing was saved", by, step_));
    if (rank_ == 0)
      log::rank0(
          "dprun: preempted by {} after step {}: saved checkpoint {}; continue with "
          "--resume auto (or --resume {})",
          by, step_, last_checkpoint_, last_checkpoint_);
  }
  if (rank_ == 0 && !cfg_.gemm_profile.empty() && !gemm_profiled)
    log::warn("--gemm-profile {}: not written: {}", cfg_.gemm_profile,
              step_ == start_.step
                  ? "this run trained no step (its checkpoint is at its end)"
                  : fmt::format("the run stopped after step {}, before step {}", step_, gemm_step));
  if (rank_ == 0 && !cfg_.dump_params.empty() && !stop_signal_)
    dump_params(parameters(), buffers(), cfg_.dump_params);
  if (rank_ == 0 && !cfg_.quiet) print_summary(sum);
  if (log_.is_open()) {
    nlohmann::json j = summary_record(sum, sequence_length_);
    j["comm_ms"] = sum.comm_ms;
    j["exposed_comm_ms"] = sum.exposed_comm_ms;
    j["overlap"] = sum.overlap;
    j["preempted"] = sum.preempted_by != 0;
    log_.write(j);
  }
  return sum;
}

}  // namespace dp
