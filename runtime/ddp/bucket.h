#pragma once
#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "runtime/comm/work.h"
#include "runtime/core/tensor.h"

namespace dp {

// One all-reduce unit: a flat buffer that every member parameter's gradient is a view
// into, so backward writes straight into what gets reduced (no copy in, no copy out).
struct Bucket {
  size_t index = 0;
  std::vector<size_t> params;   // indices into the Reducer's parameter list
  std::vector<size_t> offsets;  // element offset of each member's view in `flat`
  Tensor flat;                  // float32 [numel]
  // What the all-reduce runs on under a comm hook (bf16_compress: bfloat16 [numel],
  // fp16_compress: float16 [numel]; cast from `flat` at launch and widened back into it when
  // waited); undefined without one.
  Tensor wire;
  size_t pending = 0;   // members not yet ready in this backward
  WorkPtr work;         // the in-flight all-reduce of this step, if launched
  double ready_us = 0;  // when its last member became ready
  std::string tag;      // names the bucket in Work descriptions and errors

  size_t numel() const { return flat.numel(); }
  size_t bytes() const { return flat.nbytes(); }
  // What one all-reduce of this bucket moves per rank.
  size_t wire_bytes() const { return wire.defined() ? wire.nbytes() : flat.nbytes(); }
};

// What one synchronising step spent on gradient communication.
struct BucketSpan {
  size_t bucket = 0;
  size_t bytes = 0;     // on the wire (Bucket::wire_bytes)
  double ready_us = 0;  // last gradient of the bucket written
  double start_us = 0;  // the all-reduce began on the communication thread
  double end_us = 0;    // and completed
};

// DESIGN's figures: comm is the time some all-reduce ran; exposed is the part of it after
// backward ended (what backward did not hide), so 0 <= exposed <= comm and overlap is in
// [0, 1]; the rest of finish()'s wait (a bucket queued behind another, the communication
// thread waking up) is reported apart, as other_wait.
struct CommStats {
  double total_us = 0;    // union of the all-reduces' [start, end] intervals
  double exposed_us = 0;  // that union clipped to [backward end, ...)
  double wait_us = 0;     // backward end to the last completion
  // Backward's compute end: the last gradient plus the CPU time the training thread ran after
  // it (Reducer::finish), not the wall clock at finish(), which counts the time the thread
  // waited for a core that the communication thread held.
  double backward_end_us = 0;
  std::vector<BucketSpan> spans;
  double overlap() const { return total_us > 0 ? std::max(0.0, 1.0 - exposed_us / total_us) : 0.0; }
  double other_wait_us() const { return std::max(0.0, wait_us - exposed_us); }
};

}  // namespace dp
