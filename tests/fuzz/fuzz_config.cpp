// dprun --config FILE: the file goes through the launcher's whole option parsing (the line
// checker, then Boost.Program_options). An error that Boost raises past the checker ends in
// "(see dprun --help)" without naming the file and line: that is a finding too.
#include <cstring>
#include <string_view>

#include "launcher/options.h"
#include "tests/fuzz/fuzz.h"

namespace dp::fuzz {

void fuzz_one(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("run.cfg", data, size);
  std::string a0 = "dprun", a1 = "--config", a2 = path;
  char* argv[] = {a0.data(), a1.data(), a2.data(), nullptr};
  try {
    parse_options(3, argv);
  } catch (const Error& e) {
    const std::string_view msg = e.what(), boost_suffix = "(see dprun --help)";
    const bool from_option_parsing = msg.size() >= boost_suffix.size() &&
                                     msg.substr(msg.size() - boost_suffix.size()) == boost_suffix;
    // Values the options' own checks refuse later (an unknown model, lr <= 0) name the option.
    // what() ends at a NUL byte, so a value holding "(see dprun --help)\0" would pass for
    // Boost's suffix: such inputs are only run for crashes.
    const bool has_nul = std::memchr(data, 0, size) != nullptr;
    if (from_option_parsing && !has_nul) require_file_and_position(e, "--config " + path + ":", "");
    throw;
  }
}

void write_seeds(const std::string& dir) {
  write_file(dir + "/mlp.cfg",
             "# a comment\nmodel = mlp\nhidden = 256,128\ndata = synthetic:100\nepochs = 2\n"
             "batch-size = 64\noptimizer = sgd\nlr = 0.05\nmomentum = 0.9\neval = true\n");
  write_file(dir + "/gpt.cfg",
             "model = gpt\npreset = gpt-tiny\ndata = tokens:train.bin\nsteps = 10\n"
             "clip-grad-norm = 1   # trailing comment\nprecision = bf16\nno-prefetch = false\n"
             "bucket-cap-mb = 0.5\ntimeout = 30\nlr-schedule = cosine\nwarmup-steps = 2\n");
  write_file(dir + "/cnn.cfg",
             "model=cnn\nchannels=8,16\nsync-batchnorm=true\ncomm-hook=bf16_compress\n\r\n"
             "\tseed = 7\r\nlog-json = run.jsonl\n");
}

}  // namespace dp::fuzz
