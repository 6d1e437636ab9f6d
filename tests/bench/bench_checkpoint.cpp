// Where a checkpoint write spends its time, and the writer's speed against the raw disk: the
// sections of a gpt2-small checkpoint (124M parameters and AdamW's two moments, 1493 MB, one
// section per tensor as runtime/train/checkpoint.cpp writes them) through
//   crc      zlib's crc32 of every payload alone (no I/O)
//   write    plain write(2) of the same bytes, then fsync (no CRC): the disk's share
//   before   CheckpointWriter computing each CRC before writing the payload, everything left
//            to commit()'s fsync (the writer as it was)
//   after    ... handing written bytes to the disk as it goes (sync_file_range; the default)
//   +crcthr  ... and computing large payloads' CRC on a second thread while they are written
//            (CheckpointWriter::set_overlap_crc, off by default)
// and checks that the three wrote byte-identical files. tests/bench/bench_checkpoint.sh adds dd.
//
//   bench_checkpoint DIR [--scale F] [--reps N]  (F < 1: a smaller model; N runs of each writer)
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "runtime/core/error.h"
#include "runtime/train/checkpoint_file.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// gpt2-small's tensors (vocabulary 50257, context 1024, 12 layers of width 768), in floats.
std::vector<size_t> gpt2_small_tensors(double scale) {
  const size_t V = 50257, T = 1024, C = 768, L = 12;
  std::vector<size_t> t = {V * C, T * C};
  for (size_t l = 0; l < L; ++l)
    for (size_t n : {C, C, C * 3 * C, 3 * C, C * C, C, C, C, C * 4 * C, 4 * C, 4 * C * C, C})
      t.push_back(n);
  t.push_back(C);
  t.push_back(C);
  for (size_t& n : t) n = std::max<size_t>(1, static_cast<size_t>(double(n) * scale));
  return t;
}

void report(const char* what, double bytes, double s, const char* note = "") {
  std::printf("%-8s %8.1f MB in %6.3f s = %7.0f MB/s  %s\n", what, bytes / 1e6, s, bytes / 1e6 / s,
              note);
}

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

int main(int argc, char** argv) {
  const char* usage = "usage: bench_checkpoint DIR [--scale F] [--reps N]\n";
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::printf("%s", usage);
    return 0;
  }
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "%s", usage);
    return 2;
  }
  const std::string dir = argv[1];
  double scale = 1.0;
  int reps = 3;
  for (int i = 2; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 >= argc || (a != "--scale" && a != "--reps")) {
      std::fprintf(stderr, "bench_checkpoint: %s '%s'\n%s",
                   i + 1 >= argc && (a == "--scale" || a == "--reps") ? "a value is missing after"
                                                                      : "unknown option",
                   a.c_str(), usage);
      return 2;
    }
    if (a == "--scale") scale = std::atof(argv[i + 1]);
    if (a == "--reps") reps = std::max(1, std::atoi(argv[i + 1]));
  }
  try {
    // Params, m, v: three copies of every tensor, each its own section with its own values.
    std::vector<std::vector<float>> tensors;
    for (int copy = 0; copy < 3; ++copy)
      for (size_t n : gpt2_small_tensors(scale)) {
        std::vector<float> v(n);
        for (size_t i = 0; i < n; ++i) v[i] = float((i * 2654435761u + copy) % 1000003) * 1e-6f;
        tensors.push_back(std::move(v));
      }
    double bytes = 0;
    for (const auto& t : tensors) bytes += double(t.size() * sizeof(float));

    auto t0 = std::chrono::steady_clock::now();
    uLong crc = 0;
    for (const auto& t : tensors)
      for (size_t off = 0, n = t.size() * 4; off < n; off += size_t(64) << 20)
        crc ^= crc32(0L, reinterpret_cast<const Bytef*>(t.data()) + off,
                     static_cast<uInt>(std::min(n - off, size_t(64) << 20)));
    report("crc", bytes, seconds_since(t0), fmt::format("(checksum {:08x})", crc).c_str());

    const std::string raw = dir + "/raw.bin";
    t0 = std::chrono::steady_clock::now();
    const int fd = ::open(raw.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    DP_CHECK(fd >= 0, "cannot create {}", raw);
    for (const auto& t : tensors) {
      const char* p = reinterpret_cast<const char*>(t.data());
      for (size_t left = t.size() * 4; left > 0;) {
        const ssize_t w = ::write(fd, p, left);
        DP_CHECK(w > 0, "write {} failed", raw);
        p += w;
        left -= size_t(w);
      }
    }
    const double t_write = seconds_since(t0);
    DP_CHECK(::fsync(fd) == 0 && ::close(fd) == 0, "fsync {} failed", raw);
    const double t_raw = seconds_since(t0);
    report("write", bytes, t_raw,
           fmt::format("(write {:.3f} s + fsync {:.3f} s)", t_write, t_raw - t_write).c_str());
    ::unlink(raw.c_str());

    // Each writer REPS times, rotating which goes first (the machine is shared, the page cache
    // remembers the previous run): the median of each.
    struct Mode {
      const char* name;
      bool overlap_crc, early_writeback;
    };
    const Mode modes[] = {
        {"before", false, false}, {"after", false, true}, {"+crcthr", true, true}};
    constexpr int kModes = 3;
    std::vector<double> secs[kModes];
    std::vector<char> first;
    bool same = true;
    uint64_t file_bytes = 0;
    for (int rep = 0; rep < reps; ++rep)
      for (int k = 0; k < kModes; ++k) {
        const Mode& m = modes[(k + rep) % kModes];
        const std::string path = dir + "/bench.ckpt";
        t0 = std::chrono::steady_clock::now();
        dp::CheckpointWriter w(path);
        w.set_overlap_crc(m.overlap_crc);
        w.set_early_writeback(m.early_writeback);
        for (size_t i = 0; i < tensors.size(); ++i)
          w.add(fmt::format("tensor/{}", i), tensors[i].data(), tensors[i].size() * 4);
        w.commit();
        secs[&m - modes].push_back(seconds_since(t0));
        file_bytes = w.bytes_written();
        if (rep == 0) {
          std::vector<char> bytes = read_all(path);
          if (first.empty())
            first = std::move(bytes);
          else
            same = same && bytes == first;
        }
        ::unlink(path.c_str());
      }
    for (int k = 0; k < kModes; ++k) {
      std::vector<double> v = secs[k];
      std::sort(v.begin(), v.end());
      std::string all;
      for (double x : secs[k]) all += fmt::format(" {:.3f}", x);
      report(modes[k].name, double(file_bytes), v[v.size() / 2],
             fmt::format("(CheckpointWriter, median of{} s)", all).c_str());
    }
    std::printf("the three writers' files: %s\n", same ? "byte-identical" : "DIFFERENT");
    return same ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_checkpoint: %s\n", e.what());
    return 1;
  }
}
