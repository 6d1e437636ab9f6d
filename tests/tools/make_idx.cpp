// make_idx OUT_DIR [--train N] [--test N] [--rows R] [--cols C] [--classes K] [--seed S]
//                  [--noise SIGMA] [--gzip] [--corrupt KIND]
//
// Writes {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] of a learnable synthetic image
// task, in the layout of (Fashion-)MNIST, so that end-to-end tests of dprun can train on
// "real" IDX files without downloading anything. Every class has a blocky template image;
// a sample is its class's template at a random brightness, shifted by up to one pixel, plus
// pixel noise of standard deviation SIGMA (default 30, in pixel units). Templates differ in
// about half their blocks, so at the default noise an MLP learns the task to well over 90%
// accuracy within an epoch; raise --noise for a harder task.
//
// --corrupt damages the TRAIN split so that tests can check dprun's error messages:
//   bad-magic       images magic number 0x00000803 -> 0x12340803
//   bad-type        images type code 0x08 -> 0x07
//   truncated       images file loses its last 100 bytes
//   trailing        images file gains 7 bytes of garbage
//   wrong-dims      images header declares one row more than the payload holds
//   count-mismatch  labels file holds one label fewer than there are images
//   label-range     the last label is set to --classes (out of range for a reader told K
//                   classes; dprun's idx: takes the class count from the labels)
//   missing         the labels file is not written
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "runtime/core/error.h"
#include "runtime/core/rng.h"
#include "runtime/data/idx.h"

namespace {

struct Options {
  std::string out_dir;
  size_t train = 6000, test = 1000;
  uint32_t rows = 28, cols = 28;
  int classes = 10;
  uint64_t seed = 1;
  double noise = 30.0;
  bool gzip = false;
  std::string corrupt;
};

const char* kUsage =
    "usage: make_idx OUT_DIR [--train N] [--test N] [--rows R] [--cols C] [--classes K]\n"
    "                [--seed S] [--noise SIGMA] [--gzip]\n"
    "                [--corrupt bad-magic|bad-type|truncated|trailing|wrong-dims|\n"
    "                           count-mismatch|label-range|missing]\n";

uint64_t parse_uint(const std::string& flag, const char* v) {
  char* end = nullptr;
  errno = 0;
  unsigned long long x = std::strtoull(v, &end, 10);
  DP_CHECK(errno == 0 && end != v && *end == '\0' && v[0] != '-',
           "{} expects a non-negative integer, got '{}'", flag, v);
  return x;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      DP_CHECK(i + 1 < argc, "{} needs a value", a);
      return argv[++i];
    };
    if (a == "--train") {
      o.train = parse_uint(a, value());
    } else if (a == "--test") {
      o.test = parse_uint(a, value());
    } else if (a == "--rows") {
      o.rows = static_cast<uint32_t>(parse_uint(a, value()));
    } else if (a == "--cols") {
      o.cols = static_cast<uint32_t>(parse_uint(a, value()));
    } else if (a == "--classes") {
      o.classes = static_cast<int>(parse_uint(a, value()));
    } else if (a == "--seed") {
      o.seed = parse_uint(a, value());
    } else if (a == "--noise") {
      o.noise = double(parse_uint(a, value()));
    } else if (a == "--gzip") {
      o.gzip = true;
    } else if (a == "--corrupt") {
      o.corrupt = value();
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (!a.empty() && a[0] == '-') {
      dp::fail("unknown option '{}'", a);
    } else {
      DP_CHECK(o.out_dir.empty(), "more than one output directory ('{}' and '{}')", o.out_dir, a);
      o.out_dir = a;
    }
  }
  DP_CHECK(!o.out_dir.empty(), "missing OUT_DIR");
  DP_CHECK(o.train > 0 && o.test > 0, "--train and --test must be > 0");
  DP_CHECK(o.rows >= 4 && o.cols >= 4, "--rows and --cols must be >= 4");
  DP_CHECK(o.classes >= 2 && o.classes <= 255, "--classes must be in 2..255, got {}", o.classes);
  static const char* kinds[] = {"",         "bad-magic",  "bad-type",       "truncated",
                                "trailing", "wrong-dims", "count-mismatch", "label-range",
                                "missing"};
  bool known = false;
  for (const char* k : kinds) known = known || o.corrupt == k;
  DP_CHECK(known, "unknown --corrupt kind '{}'", o.corrupt);
  return o;
}

// Class templates on a 4x4 grid of blocks, each block on or off.
std::vector<uint8_t> make_templates(const Options& o) {
  const size_t px = size_t(o.rows) * o.cols;
  std::vector<uint8_t> t(size_t(o.classes) * px);
  dp::Philox rng(o.seed, 1);
  for (int c = 0; c < o.classes; ++c) {
    bool on[16];
    for (bool& b : on) b = rng.uniform() < 0.5f;
    for (uint32_t r = 0; r < o.rows; ++r)
      for (uint32_t col = 0; col < o.cols; ++col)
        t[c * px + r * o.cols + col] = on[(r * 4 / o.rows) * 4 + col * 4 / o.cols] ? 220 : 20;
  }
  return t;
}

void make_split(const Options& o, const std::vector<uint8_t>& templates, size_t n,
                uint64_t stream_base, std::vector<uint8_t>& images, std::vector<uint8_t>& labels) {
  const size_t px = size_t(o.rows) * o.cols;
  images.assign(n * px, 0);
  labels.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    dp::Philox rng(o.seed, stream_base + i);
    const int c = static_cast<int>(rng.below(uint64_t(o.classes)));
    const float gain = 0.6f + 0.4f * rng.uniform();
    const int dr = static_cast<int>(rng.below(3)) - 1, dc = static_cast<int>(rng.below(3)) - 1;
    labels[i] = static_cast<uint8_t>(c);
    for (int r = 0; r < int(o.rows); ++r) {
      for (int col = 0; col < int(o.cols); ++col) {
        int sr = std::min(std::max(r - dr, 0), int(o.rows) - 1);
        int sc = std::min(std::max(col - dc, 0), int(o.cols) - 1);
        float v = gain * templates[c * px + size_t(sr) * o.cols + size_t(sc)] +
                  float(o.noise) * rng.normal();
        images[i * px + size_t(r) * o.cols + size_t(col)] =
            static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, v)));
      }
    }
  }
}

void rewrite_file(const std::string& path, bool gzip, const std::vector<uint8_t>& bytes) {
  // Corruptions are applied to the decompressed bytes, then compressed again if asked, so
  // the IDX reader (not zlib) is what has to notice them.
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    DP_CHECK(f != nullptr, "cannot open '{}' for writing", path);
    DP_CHECK(bytes.empty() || gzwrite(f, bytes.data(), unsigned(bytes.size())) > 0,
             "error writing '{}'", path);
    DP_CHECK(gzclose(f) == Z_OK, "error closing '{}'", path);
  } else {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    DP_CHECK(out.good(), "error writing '{}'", path);
  }
}

std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& p) {
  std::vector<uint8_t> b = {0, 0, 0x08, uint8_t(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(d >> s));
  b.insert(b.end(), p.begin(), p.end());
  return b;
}

void write_split(const Options& o, const std::string& split, size_t n,
                 const std::vector<uint8_t>& images, std::vector<uint8_t> labels, bool corrupt) {
  const std::string suffix = o.gzip ? ".gz" : "";
  const std::string img = o.out_dir + "/" + split + "-images-idx3-ubyte" + suffix;
  const std::string lab = o.out_dir + "/" + split + "-labels-idx1-ubyte" + suffix;
  const std::string kind = corrupt ? o.corrupt : "";
  std::vector<uint32_t> img_dims = {uint32_t(n), o.rows, o.cols};
  std::vector<uint32_t> lab_dims = {uint32_t(n)};
  if (kind.empty() || kind == "count-mismatch" || kind == "label-range" || kind == "missing") {
    dp::write_idx_ubyte(img, img_dims, images, o.gzip);
  } else {
    if (kind == "wrong-dims") img_dims[1] += 1;
    std::vector<uint8_t> b = idx_bytes(img_dims, images);
    if (kind == "bad-magic") b[0] = 0x12, b[1] = 0x34;
    if (kind == "bad-type") b[2] = 0x07;
    if (kind == "truncated") b.resize(b.size() - std::min<size_t>(100, b.size() - 16));
    if (kind == "trailing") b.insert(b.end(), {1, 2, 3, 4, 5, 6, 7});
    rewrite_file(img, o.gzip, b);
  }
  if (kind == "missing") return;
  if (kind == "count-mismatch") {
    labels.pop_back();
    lab_dims[0] -= 1;
  }
  if (kind == "label-range") labels.back() = uint8_t(o.classes);
  dp::write_idx_ubyte(lab, lab_dims, labels, o.gzip);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o = parse(argc, argv);
    std::error_code ec;
    std::filesystem::create_directories(o.out_dir, ec);
    DP_CHECK(std::filesystem::is_directory(o.out_dir), "cannot create output directory '{}': {}",
             o.out_dir, ec ? ec.message() : "not a directory");
    const std::vector<uint8_t> templates = make_templates(o);
    std::vector<uint8_t> images, labels;
    // Streams far apart so that the train and test samples never coincide.
    make_split(o, templates, o.train, uint64_t{1} << 32, images, labels);
    write_split(o, "train", o.train, images, labels, !o.corrupt.empty());
    make_split(o, templates, o.test, uint64_t{2} << 32, images, labels);
    write_split(o, "t10k", o.test, images, labels, false);
    std::printf("make_idx: wrote %zu train + %zu test images of %ux%u, %d classes%s%s to %s\n",
                o.train, o.test, o.rows, o.cols, o.classes, o.gzip ? " (gzip)" : "",
                o.corrupt.empty() ? "" : (" corrupt=" + o.corrupt).c_str(), o.out_dir.c_str());
    return 0;
  } catch (const dp::Error& e) {
    std::fprintf(stderr, "make_idx: error: %s\n%s", e.what(), kUsage);
    return 2;
  }
}
