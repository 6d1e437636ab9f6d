#pragma once
// The --dump-params format: every parameter's values as raw little-endian float32,
// concatenated in registration order, nothing else. Two runs can be compared with
// `cmp` or numpy.fromfile(path, dtype="<f4"); parameter_signature() tells the layout.
#include <string>
#include <vector>

#include "runtime/nn/parameter.h"

namespace dp {

// Parameters, then buffers (BatchNorm running statistics), each in registration order.
void dump_params(const std::vector<Parameter*>& params, const std::vector<Buffer*>& buffers,
                 const std::string& path);
std::vector<float> read_params_file(const std::string& path);

}  // namespace dp
