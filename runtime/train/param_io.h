#pragma once
// The --dump-params format: every parameter's values as raw little-endian float32,
// concatenated in registration order, nothing else. Two runs can be compared with
// `cmp` or numpy.fromfile(path, dtype="<f4"); parameter_signature() tells the layout.
#include <string>
#include <vector>

#include "runtime/nn/parameter.h"

namespace dp {

// Parameters, then buffers (BatchNorm running statistics), each in registration order.
// Checks, before training, that `option`'s output `path` can be written: its directory exists
// and is writable, and the path is either absent or a regular file (dprun writes through a
// temporary file and a rename, which would replace a device such as /dev/null or /dev/full
// with a regular file, and a symbolic link with a file instead of writing where it points).
// A bad path is thus found before the run, not after it.
void check_output_path(const std::string& option, const std::string& path);

// Refuses a path that starts with "~" ("~", "~/x", or "~user/x" where user is a user) where
// no such directory exists here: the shell expands "~" only at the start of a word, so
// `--checkpoint-dir=~/ck` and `checkpoint-dir = ~/ck` in a --config file reached dprun as written,
// and dprun made ./~/ck while its messages read like the home directory.
void refuse_unexpanded_home(const std::string& option, const std::string& path);

void dump_params(const std::vector<Parameter*>& params, const std::vector<Buffer*>& buffers,
                 const std::string& path);
std::vector<float> read_params_file(const std::string& path);

}  // namespace dp
