#include "launcher/predict.h"

#include "launcher/options.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/core/json_write.h"
#include "runtime/core/units.h"
#include "runtime/ddp/bucket_assignment.h"
#include "runtime/perf/run_profile.h"
#include "runtime/perf/scaling.h"
#include "runtime/train/output_paths.h"
#include "runtime/train/param_io.h"

namespace po = boost::program_options;

namespace dp {

namespace {

struct PredictOptions {
  std::string profile;
  std::string network = "h100-nvlink-ib";
  std::string gpus = "8,16,32,64,128,256,512,1024";
  bool gpus_given = false;
  std::string json_path;  // --json: the tables as JSON too
  double link_gbit = 2;
  double link_latency_us = 50;
  int ranks_per_host = 1;
  int nics_per_node = 8;
  std::string algo = "best";
  double compute_scale = 1;
  double first_bucket_mb = 1;
  double bucket_cap_mb = 25;
  double link_burst_kib = -1;  // -1: the profile's (DPRUN_LINK_BURST when it ran)
  std::vector<std::string> validate;
  bool help = false;
  std::string help_text;
};

// An option that the chosen network does not read would be ignored without a word, and the
// table printed for another network than the one asked for.
void check_network_options(const po::variables_map& vm, const PredictOptions& o) {
  struct NetworkOption {
    const char* name;
    std::vector<std::string> networks;  // the --network values that read it
    bool validate;                      // --validate reads it whatever the network
  };
  const NetworkOption options[] = {
      {"link-gbit", {"emulated"}, false},
      {"link-latency-us", {"emulated"}, false},
      {"ranks-per-host", {"emulated"}, true},
      {"nics-per-node", {"h100-nvlink-ib"}, false},
      {"link-burst-kib", {"emulated", "measured"}, true},
  };
  for (const NetworkOption& opt : options) {
    const bool given = vm.count(opt.name) > 0 && !vm[opt.name].defaulted();
    const bool read =
        std::find(opt.networks.begin(), opt.networks.end(), o.network) != opt.networks.end() ||
        (opt.validate && !o.validate.empty());
    DP_CHECK(!given || read, "predict: --{} is for --network {}{}, not --network {}", opt.name,
             fmt::join(opt.networks, " or "), opt.validate ? " (or --validate)" : "", o.network);
  }
}

PredictOptions parse(int argc, char** argv) {
  PredictOptions o;
  // clang-format off
  po::options_description desc(
      "Usage: dprun predict --profile FILE [options]\n\n"
      "Predicts step time, exposed communication, scaling efficiency and the buckets automatic "
      "sizing would choose, from a profile written by dprun --profile-out and a model of the "
      "network (alpha-beta ring, tree and hierarchical all-reduce); with --validate, compares "
      "its predictions with measured runs.\n\nOptions");
  desc.add_options()
      ("help,h", "print this help and exit")
      ("profile", po::value(&o.profile)->value_name("FILE"), "the profile (dprun --profile-out FILE): gradient ready times, compute, the measured all-reduce")
      ("network", po::value(&o.network)->default_value(o.network), "h100-nvlink-ib (8 GPUs a node, NVLink ~370 GB/s bus bandwidth, 8 x 400 Gb/s InfiniBand a node), emulated (hosts of --ranks-per-host joined by --link-gbit and --link-latency-us) or measured (the profile's own all-reduce, as a ring over one-rank hosts: a profile of 2 or more ranks)")
      ("gpus", po::value(&o.gpus)->default_value(o.gpus), "the GPU counts (comma-separated, each 1 to 16777216: up to one node, or whole nodes; by default 8 to 1024, or 1, 2, 4, ... nodes up to 1024 GPUs where those are not whole nodes)")
      ("link-gbit", po::value(&o.link_gbit)->default_value(o.link_gbit, "2"), "--network emulated: the link's rate, Gbit/s")
      ("link-latency-us", po::value(&o.link_latency_us)->default_value(o.link_latency_us, "50"), "--network emulated: latency of one message, us")
      ("ranks-per-host", po::value(&o.ranks_per_host)->default_value(o.ranks_per_host), "--network emulated: ranks on each host (and, with --validate, for profiles that do not record their hosts)")
      ("nics-per-node", po::value(&o.nics_per_node)->default_value(o.nics_per_node), "--network h100-nvlink-ib: 400 Gb/s NICs a node (8: one a GPU, as a DGX H100; 1: one a node)")
      ("algo", po::value(&o.algo)->default_value(o.algo), "best (the cheapest per bucket, as NCCL's tuner), ring, tree or hierarchical")
      ("compute-scale", po::value(&o.compute_scale)->default_value(o.compute_scale, "1"), "multiply the profile's compute times (e.g. 0.01 for a device 100x faster than the profiled one)")
      ("first-bucket-mb", po::value(&o.first_bucket_mb)->default_value(o.first_bucket_mb, "1"), "the fixed first bucket (training's --first-bucket-mb) compared with the automatic one")
      ("bucket-cap-mb", po::value(&o.bucket_cap_mb)->default_value(o.bucket_cap_mb, "25"), "the fixed bucket cap (training's --bucket-cap-mb) compared with the automatic one")
      ("link-burst-kib", po::value(&o.link_burst_kib)->value_name("KIB"), "--network emulated or measured: each host's link is token-bucket shaped with this burst (dprun-netns's tbf burst): after an idle gap that many bytes pass at once. 0: line rate. Default: what the profile recorded (dprun-netns passes it to the ranks as DPRUN_LINK_BURST)")
      ("json", po::value(&o.json_path)->value_name("FILE"), "also write the scaling table (and the validation) to FILE as JSON")
      ("validate", po::value(&o.validate)->composing()->value_name("RUN.json"), "a measured run's profile (same model): predict its step from --profile's compute and its buckets, and compare; repeatable");
  // clang-format on
  std::ostringstream help;
  help << desc;
  o.help_text = help.str();
  po::variables_map vm;
  try {
    const po::parsed_options parsed =
        po::command_line_parser(argc - 1, argv + 1).options(desc).run();
    reject_stray_words(parsed, "predict");
    po::store(parsed, vm);
    po::notify(vm);
  } catch (const po::error& e) {
    fail("predict: {} (see dprun predict --help)", e.what());
  }
  o.help = vm.count("help") > 0;
  if (o.help) return o;
  o.gpus_given = !vm["gpus"].defaulted();
  DP_CHECK(!o.profile.empty(), "predict: --profile FILE is required");
  // Every value is checked here, before anything is read or printed: a bad one found while
  // the tables print would leave half a report, and the model's own checks do not name the flag.
  DP_CHECK(o.network == "h100-nvlink-ib" || o.network == "emulated" || o.network == "measured",
           "predict: --network {}: expected h100-nvlink-ib, emulated or measured", o.network);
  // (boost reads "nan" and "inf" as numbers: they are refused with the rest.)
  DP_CHECK(std::isfinite(o.link_gbit) && o.link_gbit > 0,
           "predict: --link-gbit must be > 0 (got {})", o.link_gbit);
  DP_CHECK(std::isfinite(o.link_latency_us) && o.link_latency_us >= 0,
           "predict: --link-latency-us must be 0 or more (got {})", o.link_latency_us);
  DP_CHECK(o.ranks_per_host >= 1 && o.ranks_per_host <= (1 << 24),
           "predict: --ranks-per-host must be 1 to 16777216 (got {})", o.ranks_per_host);
  DP_CHECK(o.nics_per_node >= 1, "predict: --nics-per-node must be at least 1 (got {})",
           o.nics_per_node);
  DP_CHECK(o.algo == "best" || o.algo == "ring" || o.algo == "tree" || o.algo == "hierarchical",
           "predict: --algo {}: expected best, ring, tree or hierarchical", o.algo);
  DP_CHECK(std::isfinite(o.compute_scale) && o.compute_scale > 0,
           "predict: --compute-scale must be > 0 (got {})", o.compute_scale);
  for (const auto& [flag, mb] :
       {std::pair<const char*, double>{"--first-bucket-mb", o.first_bucket_mb},
        std::pair<const char*, double>{"--bucket-cap-mb", o.bucket_cap_mb}}) {
    DP_CHECK(std::isfinite(mb) && mb > 0, "predict: {} must be > 0 MB (got {})", flag, mb);
    DP_CHECK(std::round(mb * kBytesPerMb) >= 4,
             "predict: {} {} MB is smaller than one float (4 bytes)", flag, mb);
    DP_CHECK(mb <= kMaxBucketMb, "predict: {} {} MB is more than {} MB (2^50 bytes)", flag, mb,
             kMaxBucketMb);
  }
  DP_CHECK(
      !vm.count("link-burst-kib") || (std::isfinite(o.link_burst_kib) && o.link_burst_kib >= 0),
      "predict: --link-burst-kib must be 0 or more (got {})", o.link_burst_kib);
  check_network_options(vm, o);
  if (vm.count("json")) {
    check_output_path("predict --json", o.json_path);
    std::vector<PathUse> inputs = {{"--profile", o.profile}};
    for (const std::string& v : o.validate) inputs.push_back({"--validate", v});
    check_outputs_spare_inputs({{"predict --json", o.json_path}}, inputs);
  }
  return o;
}

// More GPUs than any machine has, and few enough that node and step counts stay exact.
constexpr int kMaxGpus = 1 << 24;

std::vector<int> parse_gpus(const std::string& s) {
  DP_CHECK(!s.empty(), "predict: --gpus is empty");
  std::vector<int> out;
  // Item by item up to each comma, so that an empty one ("8,,16", "8,16,") is seen:
  // std::getline drops a trailing empty field.
  for (size_t start = 0;;) {
    const size_t comma = s.find(',', start);
    const std::string item = s.substr(start, comma == std::string::npos ? comma : comma - start);
    size_t end = 0;
    long long n = 0;
    try {
      n = std::stoll(item, &end);
    } catch (const std::exception&) {
      end = 0;
    }
    DP_CHECK(end == item.size() && end > 0 && std::isdigit(static_cast<unsigned char>(item[0])) &&
                 n >= 1,
             "predict: --gpus {}: '{}' is not a count", s, item);
    DP_CHECK(n <= kMaxGpus, "predict: --gpus {}: {} is more than {} GPUs (2^24)", s, item,
             kMaxGpus);
    out.push_back(int(n));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string describe(const Link& l) {
  return fmt::format("{:.3g} GB/s, {:.3g} us", l.bytes_per_us / 1000, l.alpha_us);
}

std::string buckets(const BucketChoice& c) {
  return fmt::format("{:.3g}/{:.3g} MB: {}", c.first_mb, c.cap_mb, c.assignment.size());
}

void print_profile(const RunProfile& p, const std::string& path) {
  const BackwardProfile& c = p.compute;
  fmt::print("profile {}: {}, batch {} per rank, {} rank(s) ({}), steps {}..{}\n", path, p.model,
             p.batch_size, p.world_size, p.backend, p.first_step, p.last_step);
  fmt::print(
      "  compute per step {:.2f} ms (before backward {:.2f}, backward {:.2f}, after {:.2f}); "
      "{:.2f} MB of gradients in {} parameters\n",
      c.compute_us() / 1000, c.pre_backward_us / 1000, c.backward_us / 1000,
      c.post_backward_us / 1000, bytes_to_mb(double(c.grad_bytes())), c.params.size());
  fmt::print(
      "  all-reduce over {} rank(s): {:.0f} us + {:.3f} ms/MB alone, {:.0f} us + {:.3f} ms/MB "
      "while backward computes\n",
      p.allreduce_idle.world, p.allreduce_idle.alpha_us, p.allreduce_idle.us_per_byte * 1048.576,
      p.allreduce_busy.alpha_us, p.allreduce_busy.us_per_byte * 1048.576);
  const BackwardProfile own = own_compute(p);
  double lag = 0;
  for (size_t i = 0; i < c.params.size(); ++i)
    lag = std::max(lag, c.params[i].ready_us - own.params[i].ready_us);
  if (lag > 0)
    fmt::print(
        "  a slower rank had gradients up to {:.2f} ms after rank 0: that run's, not carried into "
        "the table (--validate keeps it)\n",
        lag / 1000);
  if (p.measured.steps > 0)
    fmt::print(
        "  measured ({} steps, buckets {:.3g}/{:.3g} MB{}: {}): step {:.2f} ms, comm {:.2f} "
        "ms, exposed {:.2f} ms\n",
        p.measured.steps, p.first_bucket_mb, p.bucket_cap_mb, p.auto_buckets ? " auto" : "",
        p.assignment.size(), p.measured.step_us / 1000, p.measured.comm_us / 1000,
        p.measured.exposed_us / 1000);
}

nlohmann::json bucket_json(const BucketChoice& c) {
  return {{"first_mb", c.first_mb},
          {"cap_mb", c.cap_mb},
          {"buckets", c.assignment.size()},
          {"step_ms", c.prediction.step_us / 1000},
          {"exposed_ms", c.prediction.exposed_us / 1000},
          {"comm_ms", c.prediction.comm_us / 1000}};
}

// Prints the table and appends its rows to `rows` (--json).
void print_scaling(const BackwardProfile& compute, const Cluster& cluster,
                   const std::vector<int>& gpus, const ScalingOptions& so, nlohmann::json& rows) {
  fmt::print("\n{:>6} {:>5} {:>12} {:>9} {:>10} {:>9} {:>10} {:>16} | {:>18} {:>9} {:>10}\n",
             "GPUs", "nodes", "algorithm", "step ms", "exposed ms", "comm ms", "efficiency",
             "auto buckets",
             fmt::format("{:.3g}/{:.3g} MB buckets", so.fixed_first_mb, so.fixed_cap_mb), "step ms",
             "exposed ms");
  for (int n : gpus) {
    const ScalingRow r = predict_at(compute, cluster, n, so);
    const StepPrediction& a = r.chosen.prediction;
    const StepPrediction& f = r.fixed.prediction;
    fmt::print(
        "{:>6} {:>5} {:>12} {:>9.2f} {:>10.2f} {:>9.2f} {:>9.1f}% {:>16} | {:>18} {:>9.2f} "
        "{:>10.2f}\n",
        n, r.nodes, algo_name(r.algo), a.step_us / 1000, a.exposed_us / 1000, a.comm_us / 1000,
        100 * r.efficiency, buckets(r.chosen), fmt::format("{}", r.fixed.assignment.size()),
        f.step_us / 1000, f.exposed_us / 1000);
    rows.push_back({{"gpus", n},
                    {"nodes", r.nodes},
                    {"algorithm", algo_name(r.algo)},
                    {"efficiency", r.efficiency},
                    {"auto", bucket_json(r.chosen)},
                    {"fixed", bucket_json(r.fixed)}});
  }
}

// read_run_profile's errors start with the path; `option` (--profile, --validate) says which
// of predict's files it is.
RunProfile read_profile(const char* option, const std::string& path) {
  try {
    return read_run_profile(path);
  } catch (const std::exception& e) {
    fail("predict: {} {}", option, e.what());
  }
}

struct MeasuredRun {
  std::string path;
  RunProfile profile;
};

// The --validate runs, read and checked against `base` before anything is printed.
std::vector<MeasuredRun> read_runs(const RunProfile& base, const std::string& base_path,
                                   const std::vector<std::string>& paths) {
  std::vector<MeasuredRun> runs;
  for (const std::string& path : paths) {
    MeasuredRun r{path, read_profile("--validate", path)};
    const RunProfile& run = r.profile;
    DP_CHECK(run.compute.params.size() == base.compute.params.size(),
             "predict: --validate {} has {} parameters, {} has {}: not the same model", path,
             run.compute.params.size(), base_path, base.compute.params.size());
    for (size_t i = 0; i < run.compute.params.size(); ++i)
      DP_CHECK(run.compute.params[i].bytes == base.compute.params[i].bytes,
               "predict: --validate: parameter {} ('{}') differs between {} and {}", i,
               run.compute.params[i].name, path, base_path);
    DP_CHECK(run.measured.steps > 0,
             "predict: --validate {} has no measured steps after its profile", path);
    runs.push_back(std::move(r));
  }
  return runs;
}

// Predicts each measured run from `base`'s compute and the run's own buckets; the network is
// `base`'s measured all-reduce when the run has its world size (a prediction that uses
// nothing of the run but its layout), else the run's own.
// `link_burst_kib` < 0: each network's own (the profile it comes from).
void print_validation(const RunProfile& base, const std::string& base_path,
                      const std::vector<MeasuredRun>& runs, double link_burst_kib,
                      int ranks_per_host, nlohmann::json& out) {
  // The runs' profiled steps: one range when they agree (a resumed run's are later).
  const RunProfile& first = runs.at(0).profile;
  std::string steps = fmt::format("steps {}..{}", first.first_step, first.last_step);
  for (const MeasuredRun& r : runs)
    if (r.profile.first_step != first.first_step || r.profile.last_step != first.last_step)
      steps = "each run's profiled steps";
  fmt::print(
      "\nvalidation against measured runs (their steps after the profile, medians).\n"
      "  pred: compute from {}; all-reduce from it too where the run has its world size, else "
      "the run's own (net)\n"
      "  own:  the run's own profiled compute ({}) with the same all-reduce: what is left "
      "is the communication model's error, not the machine's drift between runs\n",
      base_path, steps);
  fmt::print("{:<26} {:>3} {:>16} {:>8} {:>8} {:>7} {:>8} {:>7} {:>8} {:>8} {:>8} {:>4}\n", "run",
             "np", "buckets", "meas ms", "pred ms", "error", "own ms", "error", "meas exp",
             "pred exp", "own exp", "net");
  double sum_abs = 0, worst = 0, sum_abs_own = 0, worst_own = 0;
  size_t count = 0;
  for (const MeasuredRun& r : runs) {
    const std::string& path = r.path;
    const RunProfile& run = r.profile;
    const bool own_net = run.world_size != base.world_size;
    const AllReduceFit idle = own_net ? run.allreduce_idle : base.allreduce_idle;
    const AllReduceFit busy = own_net ? run.allreduce_busy : base.allreduce_busy;
    SimOptions sim;
    sim.overlap = run.overlap;
    sim.wire_ratio = run.wire_ratio;
    sim.busy_cost = [busy](double b) { return busy.time_us(b); };
    const AllReduceCost cost = [idle](double b) { return idle.time_us(b); };
    const double burst =
        link_burst_kib >= 0 ? link_burst_kib * 1024 : (own_net ? run : base).link_burst_bytes;
    const RunProfile& net = own_net ? run : base;
    const int hosts = net.hosts > 0 ? net.hosts : run.world_size / std::max(1, ranks_per_host);
    set_link_burst(sim, burst, hosts, cost);
    const StepPrediction p = simulate_step(base.compute, run.assignment, cost, sim);
    const StepPrediction q = simulate_step(run.compute, run.assignment, cost, sim);
    const double measured = run.measured.step_us;
    const double err = (p.step_us - measured) / measured,
                 err_own = (q.step_us - measured) / measured;
    sum_abs += std::fabs(err);
    worst = std::max(worst, std::fabs(err));
    sum_abs_own += std::fabs(err_own);
    worst_own = std::max(worst_own, std::fabs(err_own));
    ++count;
    std::string name = path;
    if (name.size() > 26) name = "..." + name.substr(name.size() - 23);
    fmt::print(
        "{:<26} {:>3} {:>16} {:>8.1f} {:>8.1f} {:>+6.1f}% {:>8.1f} {:>+6.1f}% {:>8.1f} {:>8.1f} "
        "{:>8.1f} {:>4}\n",
        name, run.world_size,
        fmt::format("{:.3g}/{:.3g}{}: {}", run.first_bucket_mb, run.bucket_cap_mb,
                    run.auto_buckets ? " auto" : "", run.assignment.size()),
        measured / 1000, p.step_us / 1000, 100 * err, q.step_us / 1000, 100 * err_own,
        run.measured.exposed_us / 1000, p.exposed_us / 1000, q.exposed_us / 1000,
        own_net ? "own" : "base");
    out["runs"].push_back({{"run", path},
                           {"world_size", run.world_size},
                           {"buckets", run.assignment.size()},
                           {"measured_step_ms", measured / 1000},
                           {"pred_step_ms", p.step_us / 1000},
                           {"pred_error", err},
                           {"own_step_ms", q.step_us / 1000},
                           {"own_error", err_own},
                           {"measured_exposed_ms", run.measured.exposed_us / 1000},
                           {"pred_exposed_ms", p.exposed_us / 1000},
                           {"own_exposed_ms", q.exposed_us / 1000},
                           {"network", own_net ? "own" : "base"}});
  }
  if (count > 0) {
    out["pred_mean_abs_error"] = sum_abs / double(count);
    out["pred_max_abs_error"] = worst;
    out["own_mean_abs_error"] = sum_abs_own / double(count);
    out["own_max_abs_error"] = worst_own;
  }
  if (count > 0)
    fmt::print(
        "step time error over {} run(s): pred mean |error| {:.1f}% (max {:.1f}%); own mean "
        "|error| {:.1f}% (max {:.1f}%)\n",
        count, 100 * sum_abs / double(count), 100 * worst, 100 * sum_abs_own / double(count),
        100 * worst_own);
}

}  // namespace

int predict_main(int argc, char** argv) {
  try {
    const PredictOptions o = parse(argc, argv);
    if (o.help) {
      std::fputs(o.help_text.c_str(), stdout);
      return 0;
    }
    std::vector<int> gpus = parse_gpus(o.gpus);
    const RunProfile prof = read_profile("--profile", o.profile);
    const std::vector<MeasuredRun> runs = read_runs(prof, o.profile, o.validate);
    Cluster cluster;
    if (o.network == "h100-nvlink-ib") {
      cluster = h100_nvlink_ib();
      cluster.nics_per_node = o.nics_per_node;
    } else if (o.network == "emulated") {
      cluster = emulated_link(o.link_gbit, o.link_latency_us, o.ranks_per_host);
    } else {
      DP_CHECK(prof.allreduce_idle.world >= 2,
               "predict: --network measured: {} was measured on {} rank(s): its all-reduce "
               "crossed no link (use a profile of 2 or more ranks, or --network h100-nvlink-ib "
               "or emulated)",
               o.profile, prof.allreduce_idle.world);
      cluster = cluster_from_fit(prof.allreduce_idle);
    }
    // A partial node would be modelled as a full one (and hierarchical, which dprun itself
    // leaves for flat on uneven nodes): whole nodes only, or a part of one. The default list
    // is 8 to 1024 GPUs where that is whole nodes, else 1, 2, 4, ... nodes up to 1024 GPUs.
    const auto whole = [&](int n) {
      return n <= cluster.gpus_per_node || n % cluster.gpus_per_node == 0;
    };
    if (!o.gpus_given && !std::all_of(gpus.begin(), gpus.end(), whole)) {
      gpus.clear();
      for (int64_t n = cluster.gpus_per_node; gpus.empty() || n <= 1024; n *= 2)
        gpus.push_back(static_cast<int>(n));
    }
    for (int n : gpus)
      DP_CHECK(whole(n),
               "predict: --gpus {}: {} GPUs are not a whole number of nodes of {} (network {}); "
               "a partial node is not modelled",
               o.gpus, n, cluster.gpus_per_node, cluster.name);
    ScalingOptions so;
    so.algo = parse_algo(o.algo);
    so.fixed_first_mb = o.first_bucket_mb;
    so.fixed_cap_mb = o.bucket_cap_mb;
    // A GPU cluster's NICs send at line rate.
    const double burst = o.link_burst_kib >= 0 ? o.link_burst_kib * 1024 : prof.link_burst_bytes;
    if (o.network != "h100-nvlink-ib") so.link_burst_bytes = burst;
    // The profiled host's contention (all-reduces slower while backward computes) carries
    // over to its own and to emulated hosts; a GPU cluster's NCCL does not share the cores.
    const bool contention = o.network != "h100-nvlink-ib" && prof.allreduce_idle.world > 1;
    if (contention) {
      const AllReduceFit idle = prof.allreduce_idle, busy = prof.allreduce_busy;
      so.busy_factor = [idle, busy](double b) {
        const double t = idle.time_us(b);
        return t > 0 ? std::max(1.0, busy.time_us(b) / t) : 1.0;
      };
    }
    so.sim.overlap = prof.overlap;
    so.sim.wire_ratio = prof.wire_ratio;
    // Rank 0's own ready times: the profiled run's skew between ranks is not the model's
    // compute (--validate, below, predicts measured runs with what they waited for).
    const BackwardProfile compute = scale_compute(own_compute(prof), o.compute_scale);

    print_profile(prof, o.profile);
    fmt::print(
        "\nnetwork {}: {} GPU(s) a node at {}; {} link(s) a node at {}{}; all-reduce {}{}{}\n",
        cluster.name, cluster.gpus_per_node, describe(cluster.intra), cluster.nics_per_node,
        describe(cluster.inter),
        so.link_burst_bytes > 0
            ? fmt::format(" (token bucket {:.0f} KiB)", so.link_burst_bytes / 1024)
            : "",
        o.algo, o.compute_scale != 1 ? fmt::format("; compute x{:.3g}", o.compute_scale) : "",
        contention ? "; all-reduces during backward slowed as profiled" : "");
    nlohmann::json doc = {{"profile", o.profile},
                          {"network", cluster.name},
                          {"gpus_per_node", cluster.gpus_per_node},
                          {"algo", o.algo},
                          {"compute_scale", o.compute_scale},
                          {"rows", nlohmann::json::array()}};
    print_scaling(compute, cluster, gpus, so, doc["rows"]);
    if (!runs.empty()) {
      doc["validation"] = {{"runs", nlohmann::json::array()}};
      print_validation(prof, o.profile, runs, o.link_burst_kib, o.ranks_per_host,
                       doc["validation"]);
    }
    // The table is the result: a failed write of it (a full disk) is an error, as in coreutils.
    DP_CHECK(std::fflush(stdout) == 0 && !std::ferror(stdout),
             "predict: writing the table to stdout failed: {}", std::strerror(errno));
    if (!o.json_path.empty()) write_json_atomically("predict --json", o.json_path, doc, 2);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dprun: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace dp
