#include "launcher/bench_allreduce.h"

#include <mpi.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "launcher/bench_check_values.h"
#include "launcher/bench_nccl.h"
#include "runtime/comm/mpi_process_group.h"
#include "runtime/comm/mpi_runtime.h"
#include "runtime/core/bf16.h"
#include "runtime/core/clock.h"
#include "runtime/core/error.h"
#include "runtime/core/json_write.h"
#include "runtime/train/param_io.h"

namespace dp {

namespace {

struct BenchOptions {
  size_t min_bytes = 8;
  size_t max_bytes = size_t(256) << 20;
  size_t factor = 2;
  size_t step_bytes = 0;  // -i: sizes grow by this many bytes a row instead of by -f
  std::string json_path;  // -J: the rows and the verdict as JSON (rank 0 writes it)
  int iters = 20;
  int warmup = 5;
  std::vector<DType> dtypes = {DType::f32, DType::bf16};
  bool shared_memory = true;
  AllreduceAlgo algo = AllreduceAlgo::automatic;
  std::string nccl = "auto";  // the NCCL column: auto (where every rank has a GPU), on, off
  double timeout_s = 300;
  size_t fused_max_bytes = FusedCheck::kDefaultBytes;  // --fused-max: what rides in the check
  size_t hierarchical_min_bytes = MpiProcessGroupOptions{}.hierarchical_min_bytes;  // --hier-min
  bool help = false;
};

// MPI counts are ints: at 2 GiB, float and bfloat16 counts (2^29, 2^30) stay well inside one.
constexpr size_t kMaxBytes = size_t(2) << 30;
// Far beyond any run, and small enough that the milliseconds fit a 64-bit count.
constexpr double kMaxTimeoutS = 1e7;

const char* const kUsage =
    "usage: mpirun -np N dprun bench-allreduce [options]\n"
    "\n"
    "All-reduce benchmark with nccl-tests' columns (size, count, type, redop, time, algbw,\n"
    "busbw = algbw x 2(n-1)/n, #wrong) for dprun's process group, the same group with --algo\n"
    "flat, MPI_Allreduce and, where every rank has a GPU, dprun's NCCL group.\n"
    "\n"
    "options:\n"
    "  -b, --min-bytes SIZE     smallest message (default 8); sizes: 8, 64K, 256M, 1G (or\n"
    "                           k, m, g), at least one element (4 bytes; 2 with bfloat16)\n"
    "                           and at most 2G\n"
    "  -e, --max-bytes SIZE     largest message (default 256M)\n"
    "  -f, --step-factor N      multiply the size by N each row (default 2; 2 to 999999999)\n"
    "  -i, --step-bytes SIZE    add SIZE bytes each row instead (a linear sweep, at most\n"
    "                           10000 rows; not with -f)\n"
    "  -J, --output-file FILE   also write the rows and the verdict to FILE as JSON (dprun's\n"
    "                           own keys; rank 0 checks the path first and writes the file\n"
    "                           when the run ends, wrong sums included)\n"
    "  -n, --iters N            timed iterations a size (default 20; 1 to 999999999)\n"
    "  -w, --warmup-iters N     untimed iterations first (default 5; at most 999999999)\n"
    "  -d, --datatype T         float (fp32), bfloat16 (bf16) or all (default all)\n"
    "  --no-shm                 no shared-memory buckets: the ring or MPI_Allreduce\n"
    "  --algo A                 auto, flat or hierarchical (default auto)\n"
    "  --nccl M                 the NCCL column: auto, on or off (default auto)\n"
    "  --timeout S              seconds one all-reduce may take before the run fails\n"
    "                           (default 300)\n"
    "  --fused-max SIZE         all-reduces up to SIZE ride in the desync check (default 32K;\n"
    "                           0: none; at most 4M)\n"
    "  --hier-min SIZE          across nodes, the hierarchical path from SIZE (default 64K)\n"
    "  -h, --help               print this help and exit\n"
    "\n"
    "nccl-tests' long spellings (--minbytes, --stepbytes, --output_file, ...) are taken too.\n"
    "Ends with nccl-tests' footer (# Out of bounds values : N OK|FAILED, N the wrong elements\n"
    "of every row and column; # Avg bus bandwidth); a wrong element fails the run on every\n"
    "rank (exit 1).\n";

// "8", "64K", "256M", "1G", or lower case as nccl-tests takes them (-b 1k, 8m): the whole
// string, digits and one optional unit, so "8 M", "+8", "-8" or "1KB" are refused, not misread.
size_t parse_size(const std::string& s, const char* opt) {
  const size_t ndigits = std::min(s.find_first_not_of("0123456789"), s.size());
  const std::string unit = s.substr(ndigits);
  const size_t mult = unit.empty()                 ? 1
                      : unit == "K" || unit == "k" ? size_t(1) << 10
                      : unit == "M" || unit == "m" ? size_t(1) << 20
                      : unit == "G" || unit == "g" ? size_t(1) << 30
                                                   : 0;
  DP_CHECK(ndigits >= 1 && mult != 0,
           "bench-allreduce {} must be a size such as 8, 64K, 256M or 1g, got '{}'", opt, s);
  // 18 digits fit stoull; the product must fit too.
  const unsigned long long v = ndigits <= 18 ? std::stoull(s.substr(0, ndigits)) : ~0ull;
  DP_CHECK(v <= SIZE_MAX / mult, "bench-allreduce {} {}: too large", opt, s);
  return size_t(v) * mult;
}

// -b and -e: within what one MPI call (an int count) moves.
size_t parse_message_size(const std::string& s, const char* opt) {
  const size_t v = parse_size(s, opt);
  DP_CHECK(v <= kMaxBytes, "bench-allreduce {} must be at most 2G (MPI counts are ints), got '{}'",
           opt, s);
  return v;
}

// A whole number from `min` to kMaxCount, the whole string ("-n 3x", "-n 1e3" and "-n -1" are
// refused). Nine digits at most: stoi would throw past int's range, with no option named.
constexpr int kMaxCount = 999999999;
// A linear sweep's rows (-i): more is a typo, not a benchmark that ends today.
constexpr size_t kMaxRows = 10000;
int parse_count(const std::string& v, const std::string& opt, int min) {
  DP_CHECK(!v.empty() && v.size() <= 9 && v.find_first_not_of("0123456789") == std::string::npos &&
               std::stoi(v) >= min,
           "bench-allreduce {} must be a whole number from {} to {}, got '{}'", opt, min, kMaxCount,
           v);
  return std::stoi(v);
}

// Seconds: a finite number > 0, the whole string ("abc", "5s", "nan", "0", "-1" are refused).
double parse_seconds(const std::string& v, const std::string& opt) {
  double x = 0;
  size_t end = 0;
  try {
    x = std::stod(v, &end);
  } catch (const std::exception&) {
    end = 0;  // not a number, or out of double's range
  }
  DP_CHECK(!v.empty() && end == v.size() && !std::isspace(static_cast<unsigned char>(v[0])) &&
               std::isfinite(x) && x > 0,
           "bench-allreduce {} must be a positive number of seconds, got '{}'", opt, v);
  DP_CHECK(x <= kMaxTimeoutS, "bench-allreduce {} must be at most {:g} seconds, got '{}'", opt,
           kMaxTimeoutS, v);
  return x;
}

BenchOptions parse(int argc, char** argv) {
  BenchOptions o;
  bool min_given = false, factor_given = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      DP_CHECK(i + 1 < argc, "bench-allreduce: {} needs a value", a);
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      o.help = true;
      return o;  // what follows does not matter: help is all this run does
    } else if (a == "-b" || a == "--min-bytes" || a == "--minbytes") {
      o.min_bytes = parse_message_size(value(), "-b");
      min_given = true;
    } else if (a == "-e" || a == "--max-bytes" || a == "--maxbytes") {
      o.max_bytes = parse_message_size(value(), "-e");
    } else if (a == "-f" || a == "--step-factor" || a == "--stepfactor") {
      o.factor = size_t(parse_count(value(), "-f", 2));
      factor_given = true;
    } else if (a == "-J" || a == "--output-file" || a == "--output_file") {
      o.json_path = value();  // rank 0 checks it (its file system) before the groups are built
    } else if (a == "-i" || a == "--step-bytes" || a == "--stepbytes") {
      const std::string v = value();
      o.step_bytes = parse_message_size(v, "-i");
      DP_CHECK(o.step_bytes > 0, "bench-allreduce -i must be at least 1 byte, got '{}'", v);
    } else if (a == "-n" || a == "--iters") {
      o.iters = parse_count(value(), "-n", 1);
    } else if (a == "-w" || a == "--warmup-iters" || a == "--warmup_iters") {
      o.warmup = parse_count(value(), "-w", 0);
    } else if (a == "-d" || a == "--datatype") {
      // nccl-tests' names, and training's --precision spellings (fp32, bf16).
      std::string d = value();
      if (d == "fp32") d = "float";
      if (d == "bf16") d = "bfloat16";
      DP_CHECK(d == "float" || d == "bfloat16" || d == "all",
               "bench-allreduce -d {}: expected float (fp32), bfloat16 (bf16) or all", argv[i]);
      o.dtypes = d == "float"      ? std::vector<DType>{DType::f32}
                 : d == "bfloat16" ? std::vector<DType>{DType::bf16}
                                   : std::vector<DType>{DType::f32, DType::bf16};
    } else if (a == "--no-shm") {
      o.shared_memory = false;
    } else if (a == "--algo") {
      o.algo = parse_allreduce_algo(value(), "bench-allreduce --algo");
    } else if (a == "--nccl") {
      o.nccl = value();
      // Here, not only where the column is set up: after the process groups, and every rank
      // would build them first.
      DP_CHECK(o.nccl == "auto" || o.nccl == "on" || o.nccl == "off",
               "bench-allreduce --nccl {}: expected auto, on or off", o.nccl);
    } else if (a == "--timeout") {
      o.timeout_s = parse_seconds(value(), "--timeout");
    } else if (a == "--hier-min") {
      o.hierarchical_min_bytes = parse_size(value(), "--hier-min");
    } else if (a == "--fused-max") {
      const std::string v = value();
      o.fused_max_bytes = parse_size(v, "--fused-max");
      DP_CHECK(o.fused_max_bytes <= FusedCheck::kLimitBytes,
               "bench-allreduce --fused-max must be at most {} bytes, got '{}'",
               FusedCheck::kLimitBytes, v);
    } else {
      fail(
          "bench-allreduce: unknown option '{}' (-b -e -f -i -J -n -w -d --no-shm --algo --nccl "
          "--timeout --fused-max --hier-min; -h for help)",
          a);
    }
  }
  // One element of the smallest type benchmarked.
  size_t smallest = SIZE_MAX;
  for (DType d : o.dtypes) smallest = std::min(smallest, dtype_size(d));
  DP_CHECK(o.min_bytes >= smallest, "bench-allreduce -b must be at least {} bytes (one {}), got {}",
           smallest, smallest == 2 ? "bfloat16" : "float", o.min_bytes);
  DP_CHECK(o.min_bytes <= o.max_bytes,
           "bench-allreduce -b ({} bytes{}) must not exceed -e ({} bytes)", o.min_bytes,
           min_given ? "" : ", the default", o.max_bytes);
  DP_CHECK(o.step_bytes == 0 || !factor_given,
           "bench-allreduce: -i (add bytes each row) and -f (multiply) exclude each other");
  DP_CHECK(o.step_bytes == 0 || (o.max_bytes - o.min_bytes) / o.step_bytes < kMaxRows,
           "bench-allreduce -i {}: {} to {} bytes would be more than {} rows", o.step_bytes,
           o.min_bytes, o.max_bytes, kMaxRows);
  return o;
}

// MPI has no bfloat16: the baseline adds 2-byte elements through float, as dprun's ring does.
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const bf16*>(in);
  auto* b = static_cast<bf16*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = float_to_bf16(bf16_to_float(a[i]) + bf16_to_float(b[i]));
}

void fill(Tensor& t, const CheckValues& values, int rank) {
  const size_t n = t.numel();
  if (t.dtype() == DType::f32) {
    float* p = t.f32();
    for (size_t i = 0; i < n; ++i) p[i] = values.value(rank, i);
  } else {
    bf16* p = t.data<bf16>();
    for (size_t i = 0; i < n; ++i) p[i] = float_to_bf16(values.value(rank, i));
  }
}

// nccl-tests' #wrong: elements that differ from the sum (exact in either dtype).
size_t count_wrong(const Tensor& t, const CheckValues& values) {
  size_t wrong = 0;
  const std::vector<float> got = t.to_vector();
  for (size_t i = 0; i < got.size(); ++i) wrong += got[i] != values.sum(i);
  return wrong;
}

// Median over iterations of the slowest rank's time, in microseconds: the machine is noisy,
// and a collective takes as long as its slowest rank. `f` returns the part of its time that
// was the hand-off to and from the communication thread (0 for MPI): its median over the
// iterations of this rank goes to *handoff_us.
template <typename F>
double time_us(F&& f, int iters, int warmup, double* handoff_us = nullptr) {
  std::vector<double> t, h;
  for (int i = 0; i < iters + warmup; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = now_us();
    const double handoff = f(t0);
    double dt = now_us() - t0, worst = 0;
    MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (i >= warmup) {
      t.push_back(worst);
      h.push_back(handoff);
    }
  }
  std::nth_element(t.begin(), t.begin() + long(t.size() / 2), t.end());
  std::nth_element(h.begin(), h.begin() + long(h.size() / 2), h.end());
  if (handoff_us) *handoff_us = h[h.size() / 2];
  return t[t.size() / 2];
}

// A process group's all-reduce, timed as training uses it; returns the hand-off: from the call
// to the communication thread starting it, plus from its completion to wait() returning.
double pg_allreduce(MpiProcessGroup& pg, Tensor& t, std::chrono::milliseconds timeout, double t0) {
  WorkPtr w = pg.allreduce(t, ReduceOp::sum, "bench");
  w->wait(timeout);
  const double back = now_us();
  return (w->start_us() - t0) + (back - w->end_us());
}

// Runs `rank0_step` on rank 0 (the rank that writes the outputs) and agrees on its outcome
// (agree_all_ok): on a failure rank 0 fails with its own error and every other rank with
// `others_message`, instead of going on alone or waiting forever for rank 0.
template <typename F>
void agree_on_rank0(int rank, F rank0_step, const std::string& others_message) {
  std::string error;
  if (rank == 0) {
    try {
      rank0_step();
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (agree_all_ok(error.empty()).all_ok) return;
  fail("{}", rank == 0 ? error : others_message);
}

}  // namespace

int bench_allreduce_main(int argc, char** argv, const MpiInfo& info) {
  const BenchOptions o = parse(argc, argv);
  const int world = info.size, rank = info.rank;
  if (o.help) {  // every rank exits 0 (mpirun would abort the job otherwise), one prints
    if (rank == 0) std::fputs(kUsage, stdout);
    return 0;
  }
  // -J: rank 0 writes it, so rank 0 checks it (a node-local path need not exist elsewhere) and
  // every rank learns the verdict, now rather than after the benchmark.
  if (!o.json_path.empty()) {
    agree_on_rank0(
        rank, [&] { check_output_path("bench-allreduce -J", o.json_path); },
        fmt::format("bench-allreduce -J {}: rank 0 cannot write it (see its message)",
                    o.json_path));
  }
  // Rounded up: --timeout 0.0001 is positive, and must not become a 0 ms timeout.
  const auto timeout = std::chrono::milliseconds(int64_t(std::ceil(o.timeout_s * 1000)));
  MpiProcessGroupOptions pgo;
  pgo.shared_memory = o.shared_memory;
  pgo.shm_timeout = timeout;
  pgo.allreduce_algo = o.algo;
  pgo.algo_option = "--algo";
  pgo.fused_max_bytes = o.fused_max_bytes;
  pgo.hierarchical_min_bytes = o.hierarchical_min_bytes;
  MpiProcessGroup pg(MPI_COMM_WORLD, pgo);
  // The flat column: the same group without the hierarchy (one ring of every rank across
  // nodes; on one node the shared-memory path, as the first column).
  pgo.allreduce_algo = AllreduceAlgo::flat;
  MpiProcessGroup flat(MPI_COMM_WORLD, pgo);
  // The NCCL column, where every rank has a GPU (one rank per GPU): after the MPI groups, so a
  // failing NCCL set-up leaves nothing half-made.
  std::string nccl_why_not;
  std::unique_ptr<NcclBenchColumn> nccl =
      NcclBenchColumn::create(o.nccl, info, o.max_bytes, timeout, nccl_why_not);
  const CheckValues values(world);
  MPI_Op bf16_op;
  MPI_Op_create(&bf16_sum, /*commute=*/1, &bf16_op);
  // nccl-tests' bus bandwidth factor for all-reduce, 2(n-1)/n as the header says: 0 on one
  // rank (nothing crosses a link), as nccl-tests prints it.
  const double factor = 2.0 * (world - 1) / world;
  if (rank == 0) {
    std::printf(
        "# dprun bench-allreduce: %d rank(s), in place, sum; time = median over %d iterations "
        "of the slowest rank (after %d warm-up)\n",
        world, o.iters, o.warmup);
    std::printf("# dprun: the process group as training uses it (its communication thread; %s)\n",
                pg.hierarchical()         ? "hierarchical: shared memory in each node, then "
                                            "across nodes"
                : pg.uses_shared_memory() ? "buckets in shared memory: one node"
                                          : "flat: ring or MPI_Allreduce");
    std::printf("# flat: the same group with --algo flat (%s)\n",
                flat.uses_shared_memory() ? "buckets in shared memory: one node"
                                          : "one ring of every rank, or MPI_Allreduce");
    std::printf("# mpi: MPI_Allreduce from the calling thread; busbw = algbw x 2(n-1)/n\n");
    std::printf(
        "# handoff: of dprun's time, rank 0's median wait for its communication thread to start "
        "the call and for wait() to return after it ended\n");
    if (nccl) {
      std::printf("# nccl: dprun's NCCL process group on %s, device buffers, issue + wait()\n",
                  nccl->device().c_str());
    } else {
      std::printf("# nccl: not run (%s)\n", nccl_why_not.c_str());
    }
    std::printf(
        "#\n# %11s %12s %8s %6s | %10s %8s %8s %6s | %10s %8s %8s %6s | %10s %8s %8s %6s | %8s%s\n",
        "size", "count", "type", "redop", "time(us)", "algbw", "busbw", "#wrong", "time(us)",
        "algbw", "busbw", "#wrong", "time(us)", "algbw", "busbw", "#wrong", "handoff",
        nccl ? fmt::format(" | {:>10} {:>8} {:>8} {:>6}", "time(us)", "algbw", "busbw", "#wrong")
                   .c_str()
             : "");
    std::printf("# %11s %12s %8s %6s | %36s | %36s | %36s | %8s%s\n", "(B)", "(elements)", "", "",
                "dprun (GB/s)", "flat (GB/s)", "mpi (GB/s)", "(us)",
                nccl ? fmt::format(" | {:>36}", "nccl (GB/s)").c_str() : "");
  }
  // nccl-tests' footer and verdict: wrong elements over every row and column, and the average
  // bus bandwidth of the first column (dprun's).
  unsigned long long all_wrong[4] = {0, 0, 0, 0};
  double busbw_sum = 0;
  int rows = 0;
  nlohmann::json json_rows = nlohmann::json::array();
  for (DType dtype : o.dtypes) {
    const size_t esize = dtype_size(dtype);
    // One pg.allocate()d buffer for every size, as the Reducer's buckets are views of one arena.
    Tensor arena = pg.allocate(o.max_bytes / esize, dtype);
    Tensor flat_arena = flat.allocate(o.max_bytes / esize, dtype);
    Tensor plain = Tensor::zeros({int64_t(o.max_bytes / esize)}, dtype);
    size_t last_count = 0;
    for (size_t requested = o.min_bytes; requested <= o.max_bytes;
         requested = o.step_bytes > 0 ? requested + o.step_bytes : requested * o.factor) {
      // What moves is whole elements: the size column and algbw are count x element size, as
      // nccl-tests has them (-b 10 of float is 2 elements, 8 bytes). A size that rounds to no
      // element or to the previous row's count adds nothing.
      const size_t count = requested / esize;
      if (count == 0 || count == last_count) continue;
      last_count = count;
      const size_t bytes = count * esize;
      Tensor t = arena.view(0, {int64_t(count)});
      Tensor f = flat_arena.view(0, {int64_t(count)});
      Tensor m = plain.view(0, {int64_t(count)});
      double handoff_us = 0;
      const double pg_us = time_us([&](double t0) { return pg_allreduce(pg, t, timeout, t0); },
                                   o.iters, o.warmup, &handoff_us);
      const double flat_us =
          time_us([&](double t0) { return pg_allreduce(flat, f, timeout, t0); }, o.iters, o.warmup);
      const double mpi_us = time_us(
          [&](double) {
            MPI_Allreduce(MPI_IN_PLACE, m.raw(), int(count),
                          dtype == DType::f32 ? MPI_FLOAT : MPI_UINT16_T,
                          dtype == DType::f32 ? MPI_SUM : bf16_op, MPI_COMM_WORLD);
            return 0.0;
          },
          o.iters, o.warmup);
      // The correctness pass: one more all-reduce of known values each.
      fill(t, values, rank);
      pg.allreduce(t, ReduceOp::sum, "bench check")->wait(timeout);
      fill(f, values, rank);
      flat.allreduce(f, ReduceOp::sum, "bench check")->wait(timeout);
      fill(m, values, rank);
      MPI_Allreduce(MPI_IN_PLACE, m.raw(), int(count),
                    dtype == DType::f32 ? MPI_FLOAT : MPI_UINT16_T,
                    dtype == DType::f32 ? MPI_SUM : bf16_op, MPI_COMM_WORLD);
      double nccl_us = 0;
      unsigned long long nccl_wrong = 0;
      if (nccl) {
        Tensor g = nccl->buffer(count, dtype);
        nccl_us = time_us(
            [&](double) {
              nccl->allreduce(g);
              return 0.0;
            },
            o.iters, o.warmup);
        Tensor host = Tensor::zeros({int64_t(count)}, dtype);
        fill(host, values, rank);
        g.copy_(host);
        nccl->allreduce(g);
        nccl_wrong = count_wrong(g, values);  // to_vector() copies it to the host
      }
      unsigned long long wrong[4] = {count_wrong(t, values), count_wrong(f, values),
                                     count_wrong(m, values), nccl_wrong},
                         total[4] = {0, 0, 0, 0};
      // Every rank learns the count: a wrong sum fails the run on every rank.
      MPI_Allreduce(wrong, total, 4, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
      auto bw = [&](double us) { return double(bytes) / us / 1e3; };
      for (int c = 0; c < 4; ++c) all_wrong[c] += total[c];
      busbw_sum += bw(pg_us) * factor;
      ++rows;
      if (rank == 0 && !o.json_path.empty()) {
        auto column = [&](double us, unsigned long long w) {
          return nlohmann::json{
              {"time_us", us}, {"algbw", bw(us)}, {"busbw", bw(us) * factor}, {"wrong", w}};
        };
        nlohmann::json row = {{"size", bytes},
                              {"count", count},
                              {"type", dtype == DType::f32 ? "float" : "bfloat16"},
                              {"redop", "sum"},
                              {"dprun", column(pg_us, total[0])},
                              {"flat", column(flat_us, total[1])},
                              {"mpi", column(mpi_us, total[2])},
                              {"handoff_us", handoff_us}};
        if (nccl) row["nccl"] = column(nccl_us, total[3]);
        json_rows.push_back(std::move(row));
      }
      if (rank == 0) {
        std::printf(
            "  %11zu %12zu %8s %6s | %10.1f %8.2f %8.2f %6llu | %10.1f %8.2f %8.2f %6llu | %10.1f "
            "%8.2f %8.2f %6llu | %8.1f%s\n",
            bytes, count, dtype == DType::f32 ? "float" : "bfloat16", "sum", pg_us, bw(pg_us),
            bw(pg_us) * factor, total[0], flat_us, bw(flat_us), bw(flat_us) * factor, total[1],
            mpi_us, bw(mpi_us), bw(mpi_us) * factor, total[2], handoff_us,
            nccl ? fmt::format(" | {:10.1f} {:8.2f} {:8.2f} {:6}", nccl_us, bw(nccl_us),
                               bw(nccl_us) * factor, total[3])
                       .c_str()
                 : "");
        std::fflush(stdout);
      }
    }
  }
  MPI_Op_free(&bf16_op);
  const unsigned long long wrong = all_wrong[0] + all_wrong[1] + all_wrong[2] + all_wrong[3];
  if (rank == 0) {
    std::printf("# Out of bounds values : %llu %s\n", wrong, wrong == 0 ? "OK" : "FAILED");
    std::printf("# Avg bus bandwidth    : %g (dprun)\n#\n", rows > 0 ? busbw_sum / rows : 0.0);
    std::fflush(stdout);
  }
  if (!o.json_path.empty()) {
    // Rank 0 alone writes; a failed write names the wrong elements too (the footer has them).
    const std::string also_wrong =
        wrong == 0 ? "" : fmt::format("; and {} element(s) were wrong (the footer)", wrong);
    agree_on_rank0(
        rank,
        [&] {
          std::vector<std::string> args(argv + 1, argv + argc);
          const nlohmann::json doc = {{"command", args},
                                      {"world_size", world},
                                      {"iters", o.iters},
                                      {"warmup", o.warmup},
                                      {"process_group", pg.hierarchical()         ? "hierarchical"
                                                        : pg.uses_shared_memory() ? "shared memory"
                                                                                  : "flat"},
                                      {"nccl", nccl ? nccl->device() : nccl_why_not},
                                      {"rows", json_rows},
                                      {"out_of_bounds", wrong},
                                      {"ok", wrong == 0},
                                      {"avg_busbw", rows > 0 ? busbw_sum / rows : 0.0}};
          try {
            write_json_atomically("bench-allreduce -J", o.json_path, doc, 2);
          } catch (const std::exception& e) {
            fail("{}{}", e.what(), also_wrong);
          }
        },
        fmt::format("bench-allreduce -J {}: rank 0 could not write it{}", o.json_path, also_wrong));
  }
  DP_CHECK(wrong == 0,
           "bench-allreduce: {} element(s) of the all-reduces' results are not the exact sums "
           "(dprun {}, flat {}, mpi {}, nccl {}): a collective gives wrong results",
           wrong, all_wrong[0], all_wrong[1], all_wrong[2], all_wrong[3]);
  return 0;
}

}  // namespace dp
