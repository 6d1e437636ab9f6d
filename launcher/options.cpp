#include "launcher/options.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <boost/make_shared.hpp>
#include <boost/program_options.hpp>

#include "launcher/config_origin.h"
#include "models/registry.h"
#include "runtime/core/error.h"

namespace po = boost::program_options;

namespace dp {

namespace {

constexpr const char* kCommands = "launch, predict, bench-allreduce, prepare-text";

// Options that count something: Boost reads "-5" into an unsigned integer as 2^64 - 5, so
// these take only digits.
bool is_count_option(const std::string& name) {
  static const char* const kCounts[] = {"epochs",
                                        "steps",
                                        "batch-size",
                                        "grad-accum",
                                        "seed",
                                        "num-workers",
                                        "eval-every",
                                        "eval-batches",
                                        "eval-batch-size",
                                        "sample-every",
                                        "sample-length",
                                        "sample-top-k",
                                        "log-interval",
                                        "warmup-steps",
                                        "synthetic-test-size",
                                        "checkpoint-every",
                                        "keep-checkpoints"};
  for (const char* c : kCounts)
    if (name == c) return true;
  return false;
}

void check_count(const std::string& where, const std::string& name, const std::string& value) {
  if (!is_count_option(name)) return;
  const bool digits = !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
  DP_CHECK(digits, "{}--{} {}: expected a whole number >= 0", where, name, value);
}

// One "key = value" line of a --config file.
struct ConfigLine {
  std::string key, value;
  int line = 0;
};

// A line without its comment: '#' starts one at the start of the line or after a blank, so
// that a value may hold one ("log-json = run#3.jsonl", "checkpoint-dir = /scratch/job#3";
// Boost's reader cut both at the '#', and the run wrote where nobody asked).
std::string strip_comment(const std::string& line) {
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '#' && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t')) {
      return line.substr(0, i);
    }
  }
  return line;
}

// Reads a --config file (dprun's reader, not Boost's: see strip_comment), checking it line by
// line so that every problem names the file and the line: a line that is not "key = value",
// an unknown key, a key set twice, a value the option cannot take, a switch that only the
// command line may give.
std::vector<ConfigLine> read_config_file(const std::string& path,
                                         const po::options_description& all) {
  DP_CHECK(!std::filesystem::is_directory(path), "--config {}: is a directory, not a file", path);
  std::ifstream in(path);
  DP_CHECK(in.is_open(), "--config {}: cannot open the file", path);
  std::string line;
  std::vector<ConfigLine> lines;
  std::map<std::string, int> first_line;  // a key given twice is refused, naming both lines
  bool read_any = false;
  for (int n = 1; std::getline(in, line); ++n) {
    read_any = true;
    // A UTF-8 byte order mark (Windows editors write one) is invisible in a terminal: taken as
    // part of the first key it read "unknown option 'data'".
    if (n == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);
    const std::string where = fmt::format("--config {}:{}: ", path, n);
    // A NUL ended the message that quoted the line (UTF-16, as Notepad's "Unicode" saves,
    // read "unknown option '\xFF\xFE" and nothing more).
    DP_CHECK(line.find('\0') == std::string::npos,
             "{}holds a NUL byte: not a text file (saved as UTF-16? save it as UTF-8)", where);
    auto trim = [](const std::string& s) {
      const size_t b = s.find_first_not_of(" \t\r"), e = s.find_last_not_of(" \t\r");
      return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    const std::string text = trim(strip_comment(line));
    if (text.empty()) continue;
    const size_t eq = text.find('=');
    DP_CHECK(eq != std::string::npos && eq > 0, "{}expected 'key = value', got '{}'", where, text);
    const std::string key = trim(text.substr(0, eq)), value = trim(text.substr(eq + 1));
    // Boost matches "-h" against the short names; its config-file reader then refuses the
    // key without a file or line (found by fuzz_config).
    DP_CHECK(key[0] != '-', "{}'{}': keys are long option names without dashes (e.g. 'lr = 0.1')",
             where, key);
    const po::option_description* d = all.find_nothrow(key, false);
    DP_CHECK(d != nullptr && key != "config", "{}unknown option '{}' (see dprun --help)", where,
             key);
    // They take no value, so "help = false" would print the help and train nothing.
    DP_CHECK(key != "help" && key != "version",
             "{}'{}' is a command-line switch only (it prints and exits; it takes no value)", where,
             key);
    const auto [seen, fresh] = first_line.emplace(key, n);
    DP_CHECK(fresh, "{}'{}' is already set on line {}", where, key, seen->second);
    check_count(where, key, value);
    try {
      boost::any parsed;
      // utf8 = false, as Boost's own store() of a config file: true made Boost convert the
      // value from UTF-8 and throw a bare std::logic_error on any other byte (Latin-1 paths).
      d->semantic()->parse(parsed, {value}, false);
    } catch (const po::error&) {
      // Our own words: parsed alone, the option's name is not in Boost's message ("the
      // argument ('abc') for option is invalid"), and Boost 1.74's what() loops forever on a
      // value holding a placeholder of its own ("%value%").
      fail("{}{} = {}: not a valid value for --{}", where, key, value, key);
    }
    lines.push_back({key, value, n});
  }
  DP_CHECK(!in.bad(), "--config {}: read error", path);
  // An empty file is a config of defaults; an empty pipe or device is a config that did not
  // arrive: /dev/stdin of a rank that mpirun or `dprun launch` gave no input, or read already.
  DP_CHECK(read_any || std::filesystem::is_regular_file(path),
           "--config {}: read nothing from it (not a regular file: a pipe or device that was "
           "empty; mpirun gives stdin to rank 0 only: put the options in a file)",
           path);
  return lines;
}

// A bucket cap: a number of MiB, or "auto" (the cap keeps its default until chosen).
void parse_bucket_mb(const char* option, const std::string& text, double& mb, bool& is_auto) {
  is_auto = text == "auto";
  if (is_auto) return;
  size_t end = 0;
  try {
    mb = std::stod(text, &end);
  } catch (const std::exception&) {
    end = 0;
  }
  // Decimal only, as every other number: stod also took hexadecimal ("0x10") and blanks.
  const bool decimal = text.find_first_not_of("0123456789.eE+-") == std::string::npos;
  DP_CHECK(decimal && end > 0 && end == text.size(), "{} {}: expected a number of MiB or auto",
           option, text);
}

// --mode and --replicas (the DataParallel baseline, launcher/data_parallel_main.h).
void check_mode_options(const LaunchOptions& o) {
  DP_CHECK(o.mode == "ddp" || o.mode == "dp", "--mode {}: unknown mode (expected ddp or dp)",
           o.mode);
  DP_CHECK(o.replicas >= 0, "--replicas {}: expected a whole number >= 0", o.replicas);
  DP_CHECK(o.mode == "dp" || o.replicas == 0,
           "--replicas {} needs --mode dp (--mode ddp runs one replica per process: mpirun -np N)",
           o.replicas);
}

// "  mlp   multi-layer perceptron ..." lines for --help and --model list.
std::string model_list() {
  std::string out;
  for (const ModelEntry& e : model_registry()) {
    out += fmt::format("  {:<6} {} (data: {})\n", e.name, e.summary, fmt::join(e.data_kinds, ", "));
    for (const ModelOption& o : e.options)
      out +=
          fmt::format("           --{} {}{}\n", o.name, o.help,
                      o.default_value.empty() ? "" : fmt::format(" (default {})", o.default_value));
    if (!e.training_defaults.empty()) {
      std::vector<std::string> kv;
      for (const auto& [k, v] : e.training_defaults) kv.push_back(fmt::format("--{} {}", k, v));
      out += fmt::format("           training defaults: {}\n", fmt::join(kv, " "));
    }
    for (const auto& [name, values] : e.presets) {
      std::vector<std::string> kv;
      for (const auto& [k, v] : values) kv.push_back(fmt::format("--{} {}", k, v));
      out += fmt::format("           --preset {}: {}\n", name, fmt::join(kv, " "));
    }
  }
  return out;
}

}  // namespace

namespace {

// parse_options without the config file's origins in its messages. `o.config_origins` is
// filled as soon as the file has been read, so that parse_options can name the file and line
// of a value that a later check refuses.
void parse_options_into(LaunchOptions& o, int argc, char** argv) {
  TrainConfig& t = o.train;
  std::string config_file;
  bool no_prefetch = false;
  bool no_overlap = false;
  bool no_shm = false;
  bool no_broadcast_buffers = false;
  bool no_param_arena = false;
  std::string first_bucket_mb = "1", bucket_cap_mb = "25";  // MiB or "auto"

  // One option per line reads better than what the formatter makes of Boost's chains.
  // clang-format off
  po::options_description general("General");
  general.add_options()
      ("help,h", "print this help and exit")
      ("version", "print the version and exit")
      ("config", po::value(&config_file), "read options from FILE (\"key = value\" lines, same keys as the long options; the command line wins)")
      ("verbose,v", po::bool_switch(&o.verbose), "more log lines (every rank)")
      ("quiet,q", po::bool_switch(&t.quiet), "no progress output");

  po::options_description model("Model and data");
  model.add_options()
      ("model", po::value(&t.model)->default_value(t.model), "model to train: mlp, cnn or gpt (--model list: each with its options and presets)")
      ("data", po::value(&t.data)->default_value(t.data), "idx:DIR (MNIST-format {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]), cifar10:DIR (CIFAR-10 binary batches), tokens:FILE (llm.c token file, e.g. from dprun prepare-text) or synthetic[:N] (generated, N training samples, default 60000)")
      ("val-data", po::value(&t.val_data), "tokens:FILE: the validation split of token data (--eval, --eval-every)")
      ("synthetic-test-size", po::value(&t.synthetic_test_size)->default_value(t.synthetic_test_size), "test samples of --data synthetic")
      ("num-workers", po::value(&t.num_workers)->default_value(t.num_workers), "threads that fill each batch together (the same batches for any count): raise it when loading cannot keep up with the GPU (the log's data time)")
      ("no-prefetch", po::bool_switch(&no_prefetch), "load batches on the training thread instead of a background thread")
      ("precision", po::value(&t.precision)->default_value(t.precision), "fp32, or bf16 mixed precision: bfloat16 activations and GEMM operands with float32 accumulation, float32 master weights, gradients and optimizer state (on the CPU bfloat16 is storage only and no faster)")
      ("seed", po::value(&t.seed)->default_value(t.seed), "seed of initialisation and shuffling, and of --data synthetic's samples (the same seed, global batch and data give the same result on any number of ranks where the math allows: BatchNorm needs --sync-batchnorm)");

  po::options_description sched("Schedule");
  sched.add_options()
      ("epochs", po::value(&t.epochs)->default_value(t.epochs), "passes over the training data (with --steps and no --epochs: no limit, --steps ends the run; both given: the run ends at whichever comes first)")
      ("steps", po::value(&t.max_steps)->default_value(t.max_steps), "stop after N optimizer steps (0: no limit; without --epochs the run then lasts exactly N steps, over as many epochs as that takes)")
      ("batch-size", po::value(&t.batch_size)->default_value(t.batch_size), "samples per rank per micro-batch (global batch = batch-size x grad-accum x world size)")
      ("grad-accum", po::value(&t.grad_accum)->default_value(t.grad_accum), "micro-batches accumulated per optimizer step (gradients are all-reduced once, on the last)")
      ("eval", po::bool_switch(&t.eval), "evaluate on the test split after every epoch (sharded over the ranks, exact)")
      ("eval-every", po::value(&t.eval_every)->default_value(t.eval_every), "also evaluate every N steps and after the last step (0: off)")
      ("eval-batches", po::value(&t.eval_batches)->default_value(t.eval_batches), "evaluate on at most N batches per rank (0: the whole split)")
      ("sample-every", po::value(&t.sample_every)->default_value(t.sample_every), "language models: rank 0 prints a text sampled from the model every N steps (0: off)")
      ("sample-length", po::value(&t.sample_length)->default_value(t.sample_length), "tokens per printed sample (at most 1000000)")
      ("sample-temperature", po::value(&t.sample_temperature)->default_value(t.sample_temperature, "1"), "sampling temperature (0: greedy, the most likely token at each step)")
      ("sample-top-k", po::value(&t.sample_top_k)->default_value(t.sample_top_k), "sample from the K most likely tokens (0: all)")
      ("eval-batch-size", po::value(&t.eval_batch_size)->default_value(t.eval_batch_size), "evaluation batch per rank (0: --batch-size)");

  po::options_description optim("Optimizer");
  optim.add_options()
      ("optimizer", po::value(&t.optimizer)->default_value(t.optimizer), "sgd or adamw")
      ("lr", po::value(&t.lr)->default_value(t.lr, "0.05"), "learning rate")
      ("momentum", po::value(&t.momentum)->default_value(t.momentum, "0"), "SGD momentum")
      ("nesterov", po::value(&t.nesterov)->default_value(false, "false")->implicit_value(true, "true"), "SGD with Nesterov momentum (--nesterov=false turns a model's default off)")
      ("weight-decay", po::value(&t.weight_decay)->default_value(t.weight_decay, "0"), "L2 penalty (SGD) or decoupled weight decay (AdamW)")
      ("weight-decay-1d", po::value(&t.weight_decay_1d)->default_value(true, "true")->implicit_value(true, "true"), "apply --weight-decay to 1-D parameters too (biases, norm weights); =false decays only matrices and embeddings, as llm.c and nanoGPT train GPT-2 (gpt's default)")
      ("beta1", po::value(&t.beta1)->default_value(t.beta1, "0.9"), "AdamW beta1")
      ("beta2", po::value(&t.beta2)->default_value(t.beta2, "0.999"), "AdamW beta2")
      ("adam-eps", po::value(&t.adam_eps)->default_value(t.adam_eps, "1e-08"), "AdamW epsilon")
      ("lr-schedule", po::value(&t.lr_schedule)->default_value(t.lr_schedule), "cosine (default: linear warm-up over --warmup-steps, then cosine decay that reaches --min-lr after the last step, as llm.c's) or constant")
      ("warmup-steps", po::value(&t.warmup_steps)->default_value(t.warmup_steps), "linear warm-up steps (both schedules)")
      ("min-lr", po::value(&t.min_lr)->default_value(t.min_lr, "0"), "final learning rate of the cosine schedule")
      ("clip-grad-norm", po::value(&t.clip_grad_norm)->default_value(t.clip_grad_norm, "0"), "clip the global gradient norm (0: off)")
      ("no-param-arena", po::bool_switch(&no_param_arena), "keep each parameter in its own allocation (default: one contiguous arena of views, updated by one fused optimizer pass; for A/B measurements and debugging)");

  po::options_description dist("Distributed");
  dist.add_options()
      ("device", po::value(&o.device)->default_value(o.device), "auto, cpu or cuda[:N] (auto: cuda:<local rank> when GPUs are visible, else cpu)")
      ("backend", po::value(&o.backend)->default_value(o.backend), "auto, mpi or nccl (auto: nccl for CUDA tensors, mpi for CPU tensors)")
      ("allow-device-sharing", po::bool_switch(&o.allow_device_sharing), "let several ranks of a node share one GPU (needs --backend mpi: gradients are staged through host memory; NCCL refuses it)")
      ("first-bucket-mb", po::value(&first_bucket_mb)->default_value(first_bucket_mb), "cap of the first gradient bucket in MiB (fractions allowed), or auto (see --bucket-cap-mb)")
      ("bucket-cap-mb", po::value(&bucket_cap_mb)->default_value(bucket_cap_mb), "cap of the other gradient buckets in MiB (fractions allowed), or auto: after profiling steps 2-6 (a resumed run: its own 2nd to 6th) and measuring the all-reduce, rank 0 picks the caps with the shortest predicted step (the fixed caps until then)")
      ("no-overlap", po::bool_switch(&no_overlap), "all-reduce every bucket only after backward (to measure what overlap gains)")
      ("comm-hook", po::value(&t.comm_hook)->default_value(t.comm_hook), "none, bf16_compress or fp16_compress. bf16_compress: all-reduce each gradient bucket as bfloat16 (half the bytes on the wire, gradients rounded to 8 bits once per step; PyTorch's bf16_compress_hook). fp16_compress: the same as IEEE float16 (11 bits), each rank dividing by the world size in float32 before the cast and the ranks summing (PyTorch's fp16_compress_hook casts first, then divides); values beyond ±65504 after the division overflow; bf16_compress keeps float32's range")
      ("no-shm", po::bool_switch(&no_shm), "all-reduce through MPI even when all ranks share a node (default: gradient buckets in shared memory, reduced in place)")
      ("allreduce-algo", po::value(&t.allreduce_algo)->default_value(t.allreduce_algo), "auto, flat or hierarchical: with ranks on several nodes, hierarchical reduces inside each node through shared memory and across nodes among one rank per node and slice; flat sends every rank's bytes around one ring. auto: hierarchical when every node has the same number (> 1) of ranks")
      ("sync-batchnorm", po::bool_switch(&t.sync_batchnorm), "BatchNorm statistics over the global batch (as torch.nn.SyncBatchNorm): N ranks x batch B train exactly like 1 rank x batch N*B, for three small all-reduces per layer and step (two in forward, one in backward)")
      ("no-broadcast-buffers", po::bool_switch(&no_broadcast_buffers), "do not broadcast rank 0's module buffers (BatchNorm running statistics) before every forward")
      ("find-unused-parameters", po::bool_switch(&t.find_unused_parameters), "treat parameters without a gradient in a step as zero instead of an error")
      ("timeout", po::value(&t.timeout_s)->default_value(t.timeout_s, "300"), "seconds a collective (or rank 0's checkpoint write, which the others wait for) may take before the job is aborted as hung");

  po::options_description out("Output");
  out.add_options()
      ("log-interval", po::value(&t.log_interval)->default_value(t.log_interval), "steps between progress lines")
      ("log-json", po::value(&t.log_json), "write one JSON object per step to FILE (rank 0; a step skipped by --on-nonfinite skip has \"skipped\":true)")
      ("trace", po::value(&t.trace), "write a Chrome trace (chrome://tracing, Perfetto) of the first 20 steps of every rank to FILE (a resumed run: its own first 20)")
      ("gemm-profile", po::value(&t.gemm_profile), "write the shapes of one training step's CPU GEMMs to FILE (rank 0; this process's third step, or its last when it runs fewer), for bench_sgemm --shapes")
      ("profile-out", po::value(&t.profile_out), "write rank 0's profile of steps 2-6 (a resumed run: its own 2nd to 6th; gradient ready times, compute), the measured all-reduce cost and the later steps' median times (the last 10000) to FILE, for dprun predict")
      ("dump-params", po::value(&t.dump_params), "write the final parameters to FILE: raw little-endian float32, registration order");

  po::options_description ckpt("Checkpoints and preemption");
  ckpt.add_options()
      ("checkpoint-dir", po::value(&t.checkpoint_dir), "rank 0 writes checkpoints to DIR/step-N.ckpt (created if missing): every --checkpoint-every steps, after the last step, and on SIGTERM/SIGINT/SIGUSR1 (preemption: every rank stops after the same step, exit 0; a second signal exits at once)")
      ("checkpoint-every", po::value(&t.checkpoint_every)->default_value(t.checkpoint_every), "write a checkpoint every N optimizer steps (0: only at the end and on preemption)")
      ("keep-checkpoints", po::value(&t.keep_checkpoints)->default_value(t.keep_checkpoints), "keep only the newest K checkpoints in --checkpoint-dir (0: all)")
      ("resume", po::value(&t.resume), "auto (the newest checkpoint of --checkpoint-dir that verifies; a fresh start when there is none) or a checkpoint FILE; the run then continues exactly where it stopped")
      ("eval-only", po::bool_switch(&t.eval_only), "with --resume FILE: evaluate (--eval) and/or sample (--sample-every) the checkpoint without training, on any number of ranks")
      ("on-nonfinite", po::value(&t.on_nonfinite)->default_value(t.on_nonfinite), "a step whose gradient has a NaN or an infinity: abort (name the step and the parameter, exit non-zero) or skip (no update for that step)");

  po::options_description parallel("DataParallel baseline (--mode dp)");
  parallel.add_options()
      ("mode", po::value(&o.mode)->default_value(o.mode), "ddp: one process per rank (mpirun), gradients all-reduced during backward; dp: ONE process (no mpirun) with --replicas N replicas (threads on the CPU, cuda:0..N-1 on GPUs) that replicate replica 0's parameters, scatter the global batch and gather the gradients onto replica 0 every step, as torch.nn.DataParallel: the baseline DDP is measured against")
      ("replicas", po::value(&o.replicas)->default_value(o.replicas), "--mode dp: number of replicas (0: every visible GPU from --device on, or one per CPU core)");

  // clang-format on
  // Every model's own options, as text: the chosen model parses and checks its own.
  po::options_description model_opts(
      "Model options (dprun --model list shows which model takes which)");
  for (const ModelOption& mo : all_model_options()) {
    std::string help = mo.help;
    if (!mo.default_value.empty()) help += fmt::format(" (default {})", mo.default_value);
    model_opts.add_options()(mo.name.c_str(), po::value<std::string>(), help.c_str());
  }
  po::options_description all(
      "Usage: [mpirun -np N] dprun [options]\n       dprun COMMAND [options]  (COMMAND --help)\n\n"
      "Data-parallel training: one process per rank, gradients averaged by bucketed all-reduces "
      "overlapped with backward.\n\nCommands:\n"
      "  launch           start one process per GPU (or core) through mpirun or srun\n"
      "  predict          step time and scaling from a profile (--profile-out), 8 to 1024 GPUs\n"
      "  bench-allreduce  all-reduce bandwidth in nccl-tests' columns, next to MPI_Allreduce\n"
      "  prepare-text     text files to an llm.c token file for --model gpt\n\nOptions");
  all.add(general).add(model).add(model_opts).add(sched).add(optim).add(dist).add(out).add(ckpt);
  all.add(parallel);
  std::ostringstream help;
  help << all;
  o.help_text = help.str() + "\nModels (--model NAME):\n" + model_list();

  po::variables_map vm;
  try {
    po::parsed_options parsed = po::command_line_parser(argc, argv).options(all).run();
    // "dprun predcit" trained for 10 epochs with every default: a first word that is not an
    // option is a command, and an unknown one.
    if (argc > 1 && argv[1][0] != '-')
      fail("unknown command '{}' (commands: {}; options start with --; see dprun --help)", argv[1],
           kCommands);
    reject_stray_words(parsed, "");
    // An option given twice takes its last value (as argparse and most CLIs do), so a
    // script can append an override to a base command line.
    std::vector<po::option> last_wins;
    for (auto it = parsed.options.rbegin(); it != parsed.options.rend(); ++it) {
      bool seen = std::any_of(last_wins.begin(), last_wins.end(),
                              [&](const po::option& o) { return o.string_key == it->string_key; });
      if (!seen) last_wins.insert(last_wins.begin(), *it);
    }
    parsed.options = std::move(last_wins);
    for (const po::option& opt : parsed.options)
      if (!opt.value.empty()) check_count("", opt.string_key, opt.value.front());
    po::store(parsed, vm);
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      o.train.config_file = path;
      const std::vector<ConfigLine> lines = read_config_file(path, all);
      po::parsed_options from_file(&all);
      for (const ConfigLine& l : lines) from_file.options.emplace_back(l.key, std::vector{l.value});
      po::store(from_file, vm);
      // store() keeps the command line's values (stored first): those have no file origin.
      for (const ConfigLine& l : lines) {
        const bool on_command_line =
            std::any_of(parsed.options.begin(), parsed.options.end(),
                        [&](const po::option& opt) { return opt.string_key == l.key; });
        if (!on_command_line) o.config_origins[l.key] = fmt::format("{}:{}", path, l.line);
      }
    }
    po::notify(vm);
  } catch (const po::error& e) {
    // As in read_config_file: Boost 1.74's what() never returns when an argument holds a
    // placeholder of its own ("--lr %value%"), so such a command line gets our message.
    const bool safe = std::none_of(argv + 1, argv + argc,
                                   [](const char* a) { return std::strchr(a, '%') != nullptr; });
    if (safe) fail("{} (see dprun --help)", e.what());
    const auto* named = dynamic_cast<const po::error_with_option_name*>(&e);
    fail(
        "{}: not a valid value or usage (the value is not repeated here: it holds a '%') (see "
        "dprun --help)",
        named ? named->get_option_name() : std::string("the command line"));
  }
  o.help = vm.count("help") > 0;
  o.version = vm.count("version") > 0;
  t.prefetch = !no_prefetch;
  t.overlap = !no_overlap;
  t.shared_memory = !no_shm;
  t.broadcast_buffers = !no_broadcast_buffers;
  t.param_arena = !no_param_arena;
  if (t.model == "list") {
    o.help = true;
    o.help_text = "Models (--model NAME):\n" + model_list();
  }
  if (o.help || o.version) return;
  // --steps alone is the run's length (Hugging Face's max_steps): the default --epochs 10 cut
  // it short without a word. An --epochs given on the command line or in the file still
  // ends the run when it comes first.
  if (t.max_steps > 0 && vm["epochs"].defaulted()) t.epochs = 0;
  parse_bucket_mb("--first-bucket-mb", first_bucket_mb, t.first_bucket_mb, t.first_bucket_auto);
  parse_bucket_mb("--bucket-cap-mb", bucket_cap_mb, t.bucket_cap_mb, t.bucket_cap_auto);
  // The model's training defaults, for the options the user left at dprun's default: each
  // goes through the option's own parser and binding, as if it had been given.
  const bool momentum_given = vm.count("momentum") && !vm["momentum"].defaulted();
  for (const auto& [name, value] : find_model(t.model).training_defaults) {
    const po::option_description* d = all.find_nothrow(name, false);
    DP_CHECK(d != nullptr, "internal: model {} sets an unknown option --{}", t.model, name);
    if (vm.count(name) && !vm[name].defaulted()) continue;
    // A default never contradicts what the user gave: Nesterov needs momentum, so a model's
    // --nesterov yields to --momentum 0.
    if (name == "nesterov" && momentum_given && t.momentum == 0) continue;
    po::options_description one;
    one.add(boost::make_shared<po::option_description>(*d));
    std::vector<std::string> args = {fmt::format("--{}={}", name, value)};
    po::variables_map v;
    po::store(po::command_line_parser(args).options(one).run(), v);
    po::notify(v);
  }
  for (const ModelOption& mo : all_model_options())
    if (vm.count(mo.name)) t.model_options[mo.name] = vm[mo.name].as<std::string>();
  DP_CHECK(o.device == "auto" || o.device == "cpu" || o.device == "cuda" ||
               o.device.rfind("cuda:", 0) == 0,
           "--device {}: unknown device (expected auto, cpu, cuda or cuda:N)", o.device);
  DP_CHECK(o.backend == "auto" || o.backend == "mpi" || o.backend == "nccl",
           "--backend {}: unknown backend (expected auto, mpi or nccl)", o.backend);
  validate(t);
  // Options of another optimizer, or of sampling without --sample-every, would be ignored
  // without a word (PyTorch's AdamW refuses momentum=). Only what the user gave counts: a
  // model's training defaults (cnn: --momentum 0.9 --nesterov) go with either optimizer.
  // Turning SGD's options off (--momentum 0, --nesterov=false: the --help's way to drop a
  // model's default) asks for nothing AdamW would ignore.
  auto given = [&](const char* name) { return vm.count(name) > 0 && !vm[name].defaulted(); };
  const bool sgd_asked =
      (given("momentum") && t.momentum != 0) || (given("nesterov") && t.nesterov);
  for (const char* name : {"momentum", "nesterov"}) {
    DP_CHECK(t.optimizer != "adamw" || !given(name) || !sgd_asked,
             "--{} applies to --optimizer sgd (this run's is adamw, whose own are --beta1, "
             "--beta2 and --adam-eps)",
             name);
  }
  for (const char* name : {"beta1", "beta2", "adam-eps"}) {
    DP_CHECK(t.optimizer != "sgd" || !given(name),
             "--{} applies to --optimizer adamw (this run's is sgd)", name);
  }
  for (const char* name : {"sample-length", "sample-temperature", "sample-top-k"}) {
    DP_CHECK(t.sample_every > 0 || !given(name),
             "--{} needs --sample-every N (without it nothing is sampled)", name);
  }
  check_mode_options(o);
}

}  // namespace

void reject_stray_words(const po::parsed_options& parsed, const std::string& command) {
  const std::string prefix = command.empty() ? "" : command + ": ";
  const std::string help = command.empty() ? "dprun --help" : "dprun " + command + " --help";
  for (const po::option& opt : parsed.options) {
    if (opt.position_key < 0) continue;
    fail(
        "{}unexpected word '{}' on the command line (options take the form --name value; see "
        "{})",
        prefix, opt.value.empty() ? std::string() : opt.value.front(), help);
  }
}

LaunchOptions parse_options(int argc, char** argv) {
  LaunchOptions o;
  try {
    parse_options_into(o, argc, argv);
  } catch (const Error& e) {
    throw Error(with_config_origin(e.what(), o.config_origins));
  }
  return o;
}

}  // namespace dp
