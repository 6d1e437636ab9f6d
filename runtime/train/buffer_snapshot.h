#pragma once
#include <utility>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/nn/parameter.h"

namespace dp {

// A copy of a model's buffers taken before a step, put back when the step is skipped for a
// non-finite gradient (--on-nonfinite skip): forward has already moved BatchNorm's running
// statistics with the bad batch (NaN or huge), and a skipped step must leave the model as it
// was. The copies are allocated at the first save() and reused: the buffer list of a model
// never changes after construction.
class BufferSnapshot {
 public:
  void save(const std::vector<Buffer*>& buffers);
  void restore();

 private:
  std::vector<std::pair<Buffer*, Tensor>> copies_;
};

}  // namespace dp
