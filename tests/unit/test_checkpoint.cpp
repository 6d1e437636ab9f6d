// What a checkpoint holds: a model and its optimizer restored from one continue exactly as
// the originals; a checkpoint of another model or optimizer is refused before anything is
// overwritten; the directory policy (newest that verifies, leftovers, keep K); the resume
// rules (never a silent change of the training).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/mlp.h"
#include "runtime/core/atomic_write.h"
#include "runtime/core/error.h"
#include "runtime/core/rng.h"
#include "runtime/core/version.h"
#include "runtime/nn/module.h"
#include "runtime/optim/adamw.h"
#include "runtime/optim/sgd.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/checkpoint_dir.h"
#include "runtime/train/resume_check.h"
#include "tests/support/temp_dir.h"

using namespace dp;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/dprun-ckpt.XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

// Gradients that change with the step, the same for two models given the same step.
void set_grads(const std::vector<Parameter*>& params, int step) {
  for (size_t i = 0; i < params.size(); ++i) {
    Philox rng(1000 + uint64_t(step), i);
    float* g = params[i]->grad.f32();
    for (size_t j = 0; j < params[i]->grad.numel(); ++j) g[j] = rng.uniform() - 0.5f;
  }
}

std::vector<float> flat(const std::vector<Parameter*>& params) {
  std::vector<float> out;
  for (const Parameter* p : params) {
    const std::vector<float> v = p->value.to_vector();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

CheckpointMeta sample_meta() {
  CheckpointMeta m;
  m.progress.step = 3;
  m.progress.epoch = 1;
  m.progress.step_in_epoch = 2;
  m.progress.epoch_loss_sum = 1.25;
  m.progress.skipped_steps = 1;
  m.world_size = 2;
  m.batch_size = 16;
  m.grad_accum = 1;
  m.steps_per_epoch = 10;
  m.model = "mlp";
  m.optimizer = "adamw";
  m.settings = {{"--model", "mlp"}, {"--lr", "0.001"}, {"--steps", "0"}};
  m.buckets = {{3, 2}, {1, 0}};
  m.dprun_version = dprun_version();
  return m;
}

template <typename Opt, typename... Args>
void check_optimizer_resumes_exactly(Args... args) {
  TempDir dir;
  auto a = make_mlp(12, {8}, 3, /*seed=*/1);
  Opt opt_a(a->parameters(), args...);
  for (int t = 0; t < 3; ++t) {
    set_grads(a->parameters(), t);
    opt_a.step(0.01f);
  }
  const std::string path = dir.path + "/x.ckpt";
  CheckpointMeta meta = sample_meta();
  meta.optimizer = opt_a.kind();
  write_checkpoint(path, meta, a->parameters(), a->buffers(), opt_a);

  auto b = make_mlp(12, {8}, 3, /*seed=*/2);  // other initial values
  Opt opt_b(b->parameters(), args...);
  CheckpointReader reader(path);
  reader.verify();
  load_checkpoint_tensors(reader, b->parameters(), b->buffers(), &opt_b);
  EXPECT_EQ(opt_b.steps(), 3);
  EXPECT_EQ(flat(a->parameters()), flat(b->parameters()));
  for (int t = 3; t < 6; ++t) {
    set_grads(a->parameters(), t);
    set_grads(b->parameters(), t);
    opt_a.step(0.01f);
    opt_b.step(0.01f);
  }
  // Bit for bit: the optimizer's state (moments, momentum, step count) came back whole.
  EXPECT_EQ(flat(a->parameters()), flat(b->parameters()));
}

TEST(Checkpoint, AdamWContinuesExactly) {
  check_optimizer_resumes_exactly<AdamW>(0.9f, 0.95f, 1e-8f, 0.1f);
}

TEST(Checkpoint, SgdWithNesterovMomentumContinuesExactly) {
  check_optimizer_resumes_exactly<SGD>(0.9f, 0.0f, 5e-4f, true);
}

TEST(Checkpoint, MetaRoundTrips) {
  TempDir dir;
  auto m = make_mlp(4, {}, 2, 0);
  SGD opt(m->parameters());
  const std::string path = dir.path + "/m.ckpt";
  write_checkpoint(path, sample_meta(), m->parameters(), m->buffers(), opt);
  CheckpointReader r(path);
  const CheckpointMeta got = read_checkpoint_meta(r);
  EXPECT_EQ(got.progress.step, 3u);
  EXPECT_EQ(got.progress.epoch, 1u);
  EXPECT_EQ(got.progress.step_in_epoch, 2u);
  EXPECT_EQ(got.progress.epoch_loss_sum, 1.25);
  EXPECT_EQ(got.progress.last_eval_step, UINT64_MAX);
  EXPECT_EQ(got.progress.skipped_steps, 1u);
  EXPECT_EQ(got.world_size, 2);
  EXPECT_EQ(got.global_batch(), 32u);
  EXPECT_EQ(got.steps_per_epoch, 10u);
  EXPECT_EQ(got.settings, sample_meta().settings);
  EXPECT_EQ(got.buckets, sample_meta().buckets);
  EXPECT_EQ(got.optimizer, "adamw");  // as given in the meta
}

// A step skipped under --on-nonfinite skip leaves its NaN (or infinite) loss in the epoch's
// sum; JSON has no such numbers, and the checkpoint must still resume with the same sum.
TEST(Checkpoint, NonFiniteEpochLossSumRoundTrips) {
  TempDir dir;
  auto m = make_mlp(4, {}, 2, 0);
  SGD opt(m->parameters());
  const std::string path = dir.path + "/m.ckpt";
  const double inf = std::numeric_limits<double>::infinity();
  for (double sum : {std::numeric_limits<double>::quiet_NaN(), inf, -inf}) {
    SCOPED_TRACE(sum);
    CheckpointMeta meta = sample_meta();
    meta.progress.epoch_loss_sum = sum;
    write_checkpoint(path, meta, m->parameters(), m->buffers(), opt);
    CheckpointReader r(path);
    const double got = read_checkpoint_meta(r).progress.epoch_loss_sum;
    if (std::isnan(sum))
      EXPECT_TRUE(std::isnan(got)) << got;
    else
      EXPECT_EQ(got, sum);
  }
  // What an older dprun wrote for a non-finite sum (nlohmann's null) reads as NaN; anything
  // else is refused by name.
  nlohmann::json meta = nlohmann::json::parse(CheckpointReader(path).read_text("meta"));
  meta["epoch_loss_sum"] = nullptr;
  EXPECT_TRUE(std::isnan(parse_checkpoint_meta(meta.dump(), path).progress.epoch_loss_sum));
  meta["epoch_loss_sum"] = "lots";
  try {
    parse_checkpoint_meta(meta.dump(), path);
    FAIL() << "epoch_loss_sum \"lots\" accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("epoch_loss_sum \"lots\" is not a number"),
              std::string::npos)
        << e.what();
  }
}

// The summary's train loss (the last finished epoch's) and the outputs a stop skipped travel
// with the checkpoint; a checkpoint from before them has neither.
TEST(Checkpoint, LastEpochLossAndPendingOutputsRoundTrip) {
  TempDir dir;
  auto m = make_mlp(4, {}, 2, 0);
  SGD opt(m->parameters());
  const std::string path = dir.path + "/m.ckpt";
  CheckpointMeta meta = sample_meta();
  EXPECT_FALSE(meta.progress.last_epoch_loss.has_value());
  for (double loss : {0.75, std::numeric_limits<double>::quiet_NaN()}) {
    meta.progress.last_epoch_loss = loss;
    meta.progress.outputs_pending = true;
    write_checkpoint(path, meta, m->parameters(), m->buffers(), opt);
    const TrainingProgress got = read_checkpoint_meta(CheckpointReader(path)).progress;
    ASSERT_TRUE(got.last_epoch_loss.has_value());
    if (std::isnan(loss))
      EXPECT_TRUE(std::isnan(*got.last_epoch_loss));
    else
      EXPECT_EQ(*got.last_epoch_loss, loss);
    EXPECT_TRUE(got.outputs_pending);
  }
  nlohmann::json old = nlohmann::json::parse(CheckpointReader(path).read_text("meta"));
  old.erase("last_epoch_loss");
  old.erase("outputs_pending");
  const TrainingProgress got = parse_checkpoint_meta(old.dump(), path).progress;
  EXPECT_FALSE(got.last_epoch_loss.has_value());
  EXPECT_FALSE(got.outputs_pending);
}

TEST(Checkpoint, AnotherModelOrOptimizerIsRefusedBeforeAnythingChanges) {
  TempDir dir;
  auto small = make_mlp(12, {8}, 3, 1);
  AdamW adam(small->parameters());
  CheckpointMeta meta = sample_meta();
  const std::string path = dir.path + "/s.ckpt";
  write_checkpoint(path, meta, small->parameters(), small->buffers(), adam);
  CheckpointReader r(path);

  auto wider = make_mlp(12, {9}, 3, 1);
  AdamW adam_w(wider->parameters());
  const std::vector<float> before = flat(wider->parameters());
  try {
    load_checkpoint_tensors(r, wider->parameters(), wider->buffers(), &adam_w);
    FAIL() << "a checkpoint of another model size was loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("param/fc1.weight"), std::string::npos) << e.what();
  }
  EXPECT_EQ(flat(wider->parameters()), before);

  auto deeper = make_mlp(12, {8, 8}, 3, 1);
  EXPECT_THROW(load_checkpoint_tensors(r, deeper->parameters(), deeper->buffers(), nullptr), Error);
  auto shallower = make_mlp(12, {}, 3, 1);
  EXPECT_THROW(load_checkpoint_tensors(r, shallower->parameters(), shallower->buffers(), nullptr),
               Error);

  auto same = make_mlp(12, {8}, 3, 5);
  SGD sgd(same->parameters(), 0.9f);
  try {
    load_checkpoint_tensors(r, same->parameters(), same->buffers(), &sgd);
    FAIL() << "AdamW state was loaded into SGD";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("adamw"), std::string::npos) << e.what();
  }
  // Without an optimizer (evaluation) the same checkpoint loads.
  load_checkpoint_tensors(r, same->parameters(), same->buffers(), nullptr);
  EXPECT_EQ(flat(same->parameters()), flat(small->parameters()));
}

// Bytes alone do not make a tensor the same: a [6, 4] weight of changed model code (same
// options, so the resume check cannot tell) must not load into a [4, 6] or [24] one.
TEST(Checkpoint, AnotherShapeOfTheSameBytesIsRefused) {
  TempDir dir;
  Parameter saved("fc.weight", {6, 4});
  saved.value.f32()[5] = 3.0f;
  SGD opt({&saved});
  const std::string path = dir.path + "/shape.ckpt";
  write_checkpoint(path, sample_meta(), {&saved}, {}, opt);
  CheckpointReader r(path);
  for (const Shape& other : {Shape{4, 6}, Shape{24}}) {
    Parameter p("fc.weight", other);
    try {
      load_checkpoint_tensors(r, {&p}, {}, nullptr);
      FAIL() << "a [6, 4] weight loaded into " << shape_str(other);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(
                    "param/fc.weight is float32[6, 4], this model's is float32" + shape_str(other)),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(p.value.f32()[5], 0.0f);  // untouched
  }
  Parameter same("fc.weight", {6, 4});
  load_checkpoint_tensors(r, {&same}, {}, nullptr);
  EXPECT_EQ(same.value.f32()[5], 3.0f);
}

// The PID of a process that has exited (and been reaped): no process has it, until reused.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

void age_file(const std::string& path, std::chrono::seconds by) {
  fs::last_write_time(path, fs::file_time_type::clock::now() - by);
}

void write_step(const std::string& dir, uint64_t step) {
  auto m = make_mlp(4, {}, 2, 0);
  SGD opt(m->parameters());
  CheckpointMeta meta = sample_meta();
  meta.progress.step = step;
  write_checkpoint(checkpoint_path(dir, step), meta, m->parameters(), m->buffers(), opt);
}

TEST(CheckpointDir, ResumeAutoTakesTheNewestThatVerifies) {
  TempDir dir;
  EXPECT_EQ(choose_checkpoint(dir.path).path, "");  // a first start
  for (uint64_t s : {10, 20, 30}) write_step(dir.path, s);
  EXPECT_EQ(checkpoint_path(dir.path, 30), dir.path + "/step-00000030.ckpt");
  EXPECT_EQ(choose_checkpoint(dir.path).path, checkpoint_path(dir.path, 30));
  // The newest is cut short, and a writer was killed mid-file: step 20 it is, saying why.
  fs::resize_file(checkpoint_path(dir.path, 30), 100);
  const std::string leftover =
      dir.path + "/.step-00000040.ckpt.tmp." + host_tag() + "." + std::to_string(dead_pid());
  std::ofstream(leftover) << "partial";
  std::ofstream(dir.path + "/notes.txt") << "not a checkpoint";
  const ResumeChoice c = choose_checkpoint(dir.path);
  EXPECT_EQ(c.path, checkpoint_path(dir.path, 20));
  ASSERT_EQ(c.skipped.size(), 2u);
  EXPECT_NE(c.skipped[0].find("incomplete write"), std::string::npos) << c.skipped[0];
  EXPECT_NE(c.skipped[1].find("step-00000030.ckpt"), std::string::npos) << c.skipped[1];
  EXPECT_FALSE(fs::exists(leftover));
  EXPECT_TRUE(fs::exists(dir.path + "/notes.txt"));
  // None verifies: an error listing each, not a silent fresh start.
  fs::resize_file(checkpoint_path(dir.path, 20), 50);
  fs::resize_file(checkpoint_path(dir.path, 10), 10);
  try {
    choose_checkpoint(dir.path);
    FAIL() << "a directory of damaged checkpoints gave a fresh start";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("no checkpoint"), std::string::npos) << msg;
    EXPECT_NE(msg.find("step-00000010.ckpt"), std::string::npos) << msg;
  }
}

TEST(CheckpointDir, KeepsTheNewestK) {
  TempDir dir;
  for (uint64_t s : {5, 100, 15, 1000}) write_step(dir.path, s);
  EXPECT_TRUE(prune_checkpoints(dir.path, 0, 1000).removed.empty());
  EXPECT_EQ(prune_checkpoints(dir.path, 2, 1000).removed.size(), 2u);
  const auto left = list_checkpoints(dir.path);
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].step, 1000u);  // by step, not by name
  EXPECT_EQ(left[1].step, 100u);
}

// The audit's case: a good step 30 and a damaged step 40 (another history, or a write gone
// wrong); --resume auto resumes 30, the run writes 35, and --keep-checkpoints 1 used to keep
// "the newest", 40, removing 35 and 30: nothing usable left.
TEST(CheckpointDir, KeepNeverRemovesTheCheckpointJustWritten) {
  TempDir dir;
  for (uint64_t s : {30, 40}) write_step(dir.path, s);
  fs::resize_file(checkpoint_path(dir.path, 40), 100);
  EXPECT_EQ(choose_checkpoint(dir.path).path, checkpoint_path(dir.path, 30));
  write_step(dir.path, 35);
  // As the trainer calls it, right after the write.
  const PruneResult pruned = prune_checkpoints(dir.path, 1, 35);
  EXPECT_EQ(pruned.removed, std::vector<std::string>{checkpoint_path(dir.path, 30)});
  EXPECT_EQ(pruned.later, std::vector<std::string>{checkpoint_path(dir.path, 40)});
  EXPECT_TRUE(fs::exists(checkpoint_path(dir.path, 35)));
  EXPECT_TRUE(fs::exists(checkpoint_path(dir.path, 40)));  // not this run's to remove
  EXPECT_EQ(choose_checkpoint(dir.path).path, checkpoint_path(dir.path, 35));

  // By step: the K newest up to the one written, later ones listed and left.
  TempDir d2;
  for (uint64_t s : {10, 20, 50, 30}) write_step(d2.path, s);
  const PruneResult r = prune_checkpoints(d2.path, 2, 30);
  EXPECT_EQ(r.removed, std::vector<std::string>{checkpoint_path(d2.path, 10)});
  EXPECT_EQ(r.later, std::vector<std::string>{checkpoint_path(d2.path, 50)});
  std::vector<uint64_t> left;
  for (const CheckpointEntry& c : list_checkpoints(d2.path)) left.push_back(c.step);
  EXPECT_EQ(left, (std::vector<uint64_t>{50, 30, 20}));
}

// --checkpoint-dir with a trailing slash: the path written ("ck//step-...") did not match the
// listing's ("ck/step-..."), so --keep-checkpoints 1 removed the checkpoint just written.
TEST(CheckpointDir, TrailingSlashKeepsTheCheckpointJustWritten) {
  TempDir dir;
  const std::string slash = dir.path + "/";
  for (uint64_t s : {10, 20}) write_step(dir.path, s);
  EXPECT_EQ(checkpoint_path(slash, 20), checkpoint_path(dir.path, 20));
  const PruneResult r = prune_checkpoints(slash, 1, 20);
  EXPECT_EQ(r.removed, std::vector<std::string>{checkpoint_path(dir.path, 10)});
  EXPECT_TRUE(fs::exists(checkpoint_path(dir.path, 20)));
}

// --resume auto removes a writer's temporary only when that writer is certainly gone: an
// --eval-only --resume auto next to a training run removed the run's checkpoint in progress,
// whose rename then failed and ended the run.
// PIDs repeat: a restarted container's PID namespace gives the new job the PIDs of the killed
// one, whose leftover then looked live on every restart and was kept forever. This process
// (it writes no checkpoint while choosing one) and a process that started after the file was
// last written are not its writer.
TEST(CheckpointDir, AReusedPidIsNotTheWriter) {
  TempDir dir;
  write_step(dir.path, 10);
  const std::string host = host_tag();
  const std::string mine = std::to_string(::getpid()), parent = std::to_string(::getppid());
  auto tmp = [&](const std::string& rest) {
    std::string p = dir.path + "/.step-00000020.ckpt.tmp." + rest;
    std::ofstream(p) << "partial";
    return p;
  };
  const std::string own = tmp(host + "." + mine);
  const std::string before = tmp(host + "." + parent);
  age_file(before, std::chrono::hours(24 * 365 * 20));  // written before the parent started
  const ResumeChoice c = choose_checkpoint(dir.path);
  EXPECT_EQ(c.path, checkpoint_path(dir.path, 10));
  EXPECT_FALSE(fs::exists(own));
  EXPECT_FALSE(fs::exists(before));
  std::string all;
  for (const std::string& s : c.skipped) all += s + "\n";
  EXPECT_MENTIONS(all, own + ": an incomplete write (its writer is gone (pid " + mine +
                           " is this process: PIDs repeat");
  EXPECT_MENTIONS(all, before + ": an incomplete write (its writer is gone (pid " + parent +
                           " on this host started after the file was last written: a reused PID)");
}

TEST(CheckpointDir, ResumeAutoRemovesOnlyTemporariesOfWritersThatAreGone) {
  TempDir dir;
  write_step(dir.path, 10);
  const std::string host = host_tag();
  // A live writer here: the parent (ctest, the shell) started before these files were written.
  const std::string mine = std::to_string(::getpid()), parent = std::to_string(::getppid()),
                    dead = std::to_string(dead_pid()), dead2 = std::to_string(dead_pid());
  auto tmp = [&](const std::string& rest) {
    std::string p = dir.path + "/.step-00000020.ckpt.tmp." + rest;
    std::ofstream(p) << "partial";
    return p;
  };
  const std::string live = tmp(host + "." + parent);     // a writer running here
  const std::string live_old = tmp(mine);                // older name, a live PID, 20 min old
  const std::string gone = tmp(host + "." + dead);       // a writer here that is gone
  const std::string gone_old = tmp(dead);                // older name, no such PID, 20 min old
  const std::string unsure = tmp(dead2);                 // older name, no such PID, fresh
  const std::string remote = tmp("other-host.tmp.x.1");  // another host's, fresh
  const std::string remote_old = tmp("other-host.2");    // another host's, 20 min untouched
  for (const std::string& p : {live_old, gone_old, remote_old})
    age_file(p, std::chrono::minutes(20));

  // A read-only use (--eval-only) removes nothing, and still resumes from the checkpoint.
  const ResumeChoice ro = choose_checkpoint(dir.path, /*remove_leftovers=*/false);
  EXPECT_EQ(ro.path, checkpoint_path(dir.path, 10));
  for (const std::string& p : {live, live_old, gone, gone_old, unsure, remote, remote_old})
    EXPECT_TRUE(fs::exists(p)) << p;

  const ResumeChoice c = choose_checkpoint(dir.path);
  EXPECT_EQ(c.path, checkpoint_path(dir.path, 10));
  for (const std::string& p : {live, live_old, unsure, remote}) EXPECT_TRUE(fs::exists(p)) << p;
  for (const std::string& p : {gone, gone_old, remote_old}) EXPECT_FALSE(fs::exists(p)) << p;
  std::string all;
  for (const std::string& s : c.skipped) all += s + "\n";
  EXPECT_NE(all.find(live + ": an incomplete write (pid " + parent + " on this host is running"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find(gone + ": an incomplete write (its writer (pid " + dead +
                     " on this host) is gone); removed"),
            std::string::npos)
      << all;

  // The writer's own name parses back to this host and this process.
  CheckpointTempName t;
  ASSERT_TRUE(parse_checkpoint_temp_name(
      fs::path(staging_path(checkpoint_path(dir.path, 7))).filename().string(), t));
  EXPECT_EQ(t.target, "step-00000007.ckpt");
  EXPECT_EQ(t.host, host);
  EXPECT_EQ(t.pid, long(::getpid()));
  ASSERT_TRUE(parse_checkpoint_temp_name(".step-1.ckpt.tmp.other-host.tmp.x.1", t));
  EXPECT_EQ(t.host, "other-host.tmp.x");
  EXPECT_FALSE(parse_checkpoint_temp_name(".step-1.ckpt.tmp.host.", t));
  EXPECT_FALSE(parse_checkpoint_temp_name(".step-1.ckpt.tmp.0", t));
}

ResumeTarget target_like(const CheckpointMeta& m) {
  ResumeTarget t;
  t.settings = m.settings;
  t.model_keys = {"--model"};
  t.world_size = m.world_size;
  t.batch_size = m.batch_size;
  t.grad_accum = m.grad_accum;
  t.steps_per_epoch = m.steps_per_epoch;
  return t;
}

TEST(ResumeCheck, SameRunResumesWithItsBucketLayout) {
  const CheckpointMeta m = sample_meta();
  const ResumeVerdict v = check_resume(m, target_like(m), "x.ckpt");
  EXPECT_EQ(v.error, "");
  EXPECT_TRUE(v.notes.empty());
  EXPECT_TRUE(v.same_layout);
}

TEST(ResumeCheck, AnotherLearningRateIsRefusedNamingBothValues) {
  const CheckpointMeta m = sample_meta();
  ResumeTarget t = target_like(m);
  t.settings[1].second = "0.002";
  const ResumeVerdict v = check_resume(m, t, "x.ckpt");
  EXPECT_NE(v.error.find("--lr 0.001"), std::string::npos) << v.error;
  EXPECT_NE(v.error.find("--lr 0.002"), std::string::npos) << v.error;
  // Evaluation needs only the same model.
  t.eval_only = true;
  t.world_size = 1;
  EXPECT_EQ(check_resume(m, t, "x.ckpt").error, "");
  t.settings[0].second = "cnn";
  EXPECT_NE(check_resume(m, t, "x.ckpt").error, "");
}

// Checkpoints record the version that wrote them; the settings list gained "dprun version"
// later. Another version, or a checkpoint from before that setting, resumes with a note (both
// were refused: "written with dprun version (not recorded), this run has dprun version ...").
TEST(ResumeCheck, AnotherVersionOfDprunResumesWithANote) {
  CheckpointMeta m = sample_meta();
  m.dprun_version = "0.0.9";
  ResumeTarget t = target_like(m);
  t.settings.insert(t.settings.begin(), {"dprun version", dprun_version()});
  ResumeVerdict v = check_resume(m, t, "x.ckpt");
  EXPECT_EQ(v.error, "");
  ASSERT_EQ(v.notes.size(), 1u);
  EXPECT_EQ(v.notes[0], std::string("the checkpoint was written by dprun 0.0.9, this is dprun ") +
                            dprun_version() + ": a change in between may change the results");
  m.settings.insert(m.settings.begin(), {"dprun version", "0.0.9"});
  v = check_resume(m, t, "x.ckpt");
  EXPECT_EQ(v.error, "");
  EXPECT_EQ(v.notes.size(), 1u);
  m.dprun_version = dprun_version();
  m.settings[0].second = dprun_version();
  v = check_resume(m, t, "x.ckpt");
  EXPECT_EQ(v.error, "");
  EXPECT_TRUE(v.notes.empty());
}

// The parameter arena pads each parameter's range in its bucket: other bucket boundaries,
// which on the ring path (more than 2 ranks over MPI) round the sums differently. Said aloud,
// as another bucket cap is; a checkpoint written before the arena existed had none.
TEST(ResumeCheck, TheParameterArenaSwitchIsSaidAloud) {
  CheckpointMeta m = sample_meta();
  ResumeTarget t = target_like(m);
  t.settings.emplace_back("--no-param-arena", "on");
  ResumeVerdict v = check_resume(m, t, "x.ckpt");
  EXPECT_EQ(v.error, "");
  EXPECT_TRUE(v.notes.empty());
  EXPECT_TRUE(v.same_layout);
  m.settings.emplace_back("--no-param-arena", "off");
  v = check_resume(m, t, "x.ckpt");
  EXPECT_EQ(v.error, "");
  ASSERT_EQ(v.notes.size(), 1u);
  EXPECT_NE(v.notes[0].find("--no-param-arena was off, now on: other buckets"), std::string::npos)
      << v.notes[0];
}

// --allreduce-algo takes another path (as --no-shm does), which changes no parameter: a note,
// not a refusal (auto, which resolved to hierarchical, was refused against hierarchical).
TEST(ResumeCheck, TheAllreduceAlgorithmSwitchIsSaidAloud) {
  CheckpointMeta m = sample_meta();
  m.settings.emplace_back("--allreduce-algo", "hierarchical");
  ResumeTarget t = target_like(m);
  t.settings.back().second = "auto";
  const ResumeVerdict v = check_resume(m, t, "x.ckpt");
  EXPECT_EQ(v.error, "");
  ASSERT_EQ(v.notes.size(), 1u);
  EXPECT_NE(v.notes[0].find("--allreduce-algo was hierarchical, now auto: the all-reduce takes "
                            "another path"),
            std::string::npos)
      << v.notes[0];
}

// BatchNorm normalises over each rank's micro-batch (with --sync-batchnorm, over the ranks'
// micro-batches together): another split of the global batch is another training, not another
// order of the same sums, also when the group keeps its size but not its samples.
TEST(ResumeCheck, AnotherSplitOfTheBatchChangesBatchNormsStatistics) {
  const CheckpointMeta m = sample_meta();  // 2 ranks x 16
  ResumeTarget t = target_like(m);
  t.world_size = 4;
  t.batch_size = 8;
  t.batchnorm = true;
  auto note = [&] {
    const ResumeVerdict v = check_resume(m, t, "x.ckpt");
    EXPECT_EQ(v.error, "");
    EXPECT_EQ(v.notes.size(), 1u);
    return v.notes.empty() ? std::string() : v.notes[0];
  };
  EXPECT_MENTIONS(note(),
                  "but BatchNorm normalises over each rank's micro-batch, of 8 sample(s) "
                  "(it was 16): not the same training");
  t.sync_batchnorm = true;  // 4 x 8 = 2 x 16: the same size, other samples
  EXPECT_MENTIONS(note(),
                  "the ranks' micro-batches together, groups of 32 sample(s) (it was 32, "
                  "other samples grouped): not the same training");
  t.batchnorm = false;
  EXPECT_MENTIONS(note(), "summed in another order");
}

// Measuring (--profile-out) and tolerating unused parameters change no sum: a run resumes
// with them switched either way (it was refused as "would silently change the training").
TEST(ResumeCheck, ProfilingAndUnusedParameterToleranceDoNotMatter) {
  CheckpointMeta m = sample_meta();
  m.settings.emplace_back("--profile-out", "false");
  m.settings.emplace_back("--find-unused-parameters", "false");
  ResumeTarget t = target_like(m);
  t.settings.back().second = "true";
  t.settings[t.settings.size() - 2].second = "true";
  const ResumeVerdict v = check_resume(m, t, "x.ckpt");
  EXPECT_EQ(v.error, "");
  EXPECT_TRUE(v.notes.empty());
}

// Sampling prints text from the model; it does not change the training.
TEST(ResumeCheck, SamplingSettingsDoNotMatter) {
  CheckpointMeta m = sample_meta();
  m.settings.emplace_back("--sample-length", "200");
  m.settings.emplace_back("--sample-every", "0");
  ResumeTarget t = target_like(m);
  t.settings[t.settings.size() - 2].second = "64";
  t.settings.back().second = "10";
  const ResumeVerdict v = check_resume(m, t, "x.ckpt");
  EXPECT_EQ(v.error, "");
  EXPECT_TRUE(v.notes.empty());
}

TEST(ResumeCheck, AnotherWorldSizeNeedsTheSameGlobalBatch) {
  const CheckpointMeta m = sample_meta();  // 2 ranks x 16 x 1 = 32
  ResumeTarget t = target_like(m);
  t.world_size = 4;
  const ResumeVerdict refused = check_resume(m, t, "x.ckpt");
  EXPECT_NE(refused.error.find("2 rank(s) x batch 16"), std::string::npos) << refused.error;
  EXPECT_NE(refused.error.find("4 rank(s) x 16 x 1 = 64"), std::string::npos) << refused.error;
  t.batch_size = 8;  // 4 x 8 = 32
  const ResumeVerdict ok = check_resume(m, t, "x.ckpt");
  EXPECT_EQ(ok.error, "");
  ASSERT_EQ(ok.notes.size(), 1u);
  EXPECT_NE(ok.notes[0].find("not bit-identical"), std::string::npos);
  EXPECT_FALSE(ok.same_layout);
  t.steps_per_epoch = 11;
  EXPECT_NE(check_resume(m, t, "x.ckpt").error.find("epoch boundaries"), std::string::npos);
  // The advice names everything the run needs, accumulation included (it was left out, and
  // following the advice was refused again).
  CheckpointMeta accumulated = m;
  accumulated.batch_size = 8;
  accumulated.grad_accum = 2;  // 2 x 8 x 2 = 32
  const std::string e = check_resume(accumulated, t, "x.ckpt").error;
  EXPECT_NE(e.find("(2 rank(s) x batch 8 x accumulation 2)"), std::string::npos) << e;
  EXPECT_NE(e.find("resume on 2 rank(s) with --batch-size 8 --grad-accum 2"), std::string::npos)
      << e;
}

TEST(ResumeCheck, ALongerRunIsAcceptedAloud) {
  const CheckpointMeta m = sample_meta();
  ResumeTarget t = target_like(m);
  t.settings[2].second = "500";
  const ResumeVerdict v = check_resume(m, t, "x.ckpt");
  EXPECT_EQ(v.error, "");
  ASSERT_EQ(v.notes.size(), 1u);
  EXPECT_NE(v.notes[0].find("--steps was 0"), std::string::npos) << v.notes[0];
}

}  // namespace

// --weight-decay-1d came later: a checkpoint without it decayed every parameter ("on"), so it
// resumes under "on" and is refused, naming the setting, under the gpt's new default "off".
TEST(ResumeCheck, ACheckpointFromBeforeWeightDecay1dDecayedEveryParameter) {
  const CheckpointMeta m = sample_meta();
  ResumeTarget t = target_like(m);
  t.settings.push_back({"--weight-decay-1d", "on"});
  EXPECT_EQ(check_resume(m, t, "x.ckpt").error, "");
  t.settings.back().second = "off";
  const std::string e = check_resume(m, t, "x.ckpt").error;
  EXPECT_NE(e.find("written with --weight-decay-1d on, this run has --weight-decay-1d off"),
            std::string::npos)
      << e;
}

// Older dprun took --min-lr with --lr-schedule constant (where it does nothing) and recorded it;
// this one refuses the pair, so "start it with the checkpoint's settings" could not be done.
TEST(ResumeCheck, AMinLrUnderAConstantScheduleIsNoSetting) {
  CheckpointMeta m = sample_meta();
  m.settings.push_back({"--lr-schedule", "constant"});
  m.settings.push_back({"--min-lr", "0.001"});
  ResumeTarget t = target_like(m);
  t.settings.back().second = "0";
  EXPECT_EQ(check_resume(m, t, "x.ckpt").error, "");
  // Under cosine it is the floor of the decay: another value changes the training.
  m.settings[m.settings.size() - 2].second = "cosine";
  t.settings[t.settings.size() - 2].second = "cosine";
  EXPECT_NE(check_resume(m, t, "x.ckpt")
                .error.find("written with --min-lr 0.001, this run has "
                            "--min-lr 0"),
            std::string::npos);
}

// --no-shm moves the all-reduce onto another path (other sums with more than 2 ranks): said
// aloud, as other bucket sizes are; it was not recorded, so the switch passed unnoticed. A
// checkpoint from before the setting ran with shared memory.
TEST(ResumeCheck, TheSharedMemorySwitchIsSaidAloud) {
  const CheckpointMeta m = sample_meta();
  ResumeTarget t = target_like(m);
  t.settings.push_back({"--no-shm", "off"});
  ResumeVerdict v = check_resume(m, t, "x.ckpt");
  EXPECT_EQ(v.error, "");
  EXPECT_TRUE(v.notes.empty());
  t.settings.back().second = "on";
  v = check_resume(m, t, "x.ckpt");
  EXPECT_EQ(v.error, "");
  ASSERT_EQ(v.notes.size(), 1u);
  EXPECT_NE(v.notes[0].find("--no-shm was off, now on"), std::string::npos) << v.notes[0];
}

// A model option left to its default is recorded as "": the refusal shows that readably, not
// as "--vocab-size , this run has ...".
TEST(ResumeCheck, AnOptionNotGivenIsShownAsSuch) {
  CheckpointMeta m = sample_meta();
  m.settings.push_back({"--vocab-size", ""});
  ResumeTarget t = target_like(m);
  t.settings.back().second = "300";
  std::string e = check_resume(m, t, "x.ckpt").error;
  EXPECT_NE(e.find("written with --vocab-size (not given), this run has --vocab-size 300"),
            std::string::npos)
      << e;
  t = target_like(m);
  m.settings.back().second = "300";
  e = check_resume(m, t, "x.ckpt").error;
  EXPECT_NE(e.find("written with --vocab-size 300, this run has --vocab-size (not given)"),
            std::string::npos)
      << e;
}

// Token data is recorded in windows now; a checkpoint that recorded the same data in the
// earlier words ("572 tokens samples of shape [32]") still resumes, and other data is refused
// in the new words.
TEST(ResumeCheck, TokenDataRecordedInEarlierWordsResumes) {
  CheckpointMeta m = sample_meta();
  m.settings.push_back({"training data", "572 tokens samples of shape [32] (int32), 257 classes"});
  ResumeTarget t = target_like(m);
  t.settings.back().second = "572 windows of 32 tokens (int32), vocabulary 257";
  EXPECT_EQ(check_resume(m, t, "x.ckpt").error, "");
  t.settings.back().second = "571 windows of 32 tokens (int32), vocabulary 257";
  const std::string e = check_resume(m, t, "x.ckpt").error;
  EXPECT_NE(e.find("written with training data 572 windows of 32 tokens (int32), vocabulary 257, "
                   "this run has training data 571 windows"),
            std::string::npos)
      << e;
}
