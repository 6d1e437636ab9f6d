#pragma once
// The known values `dprun bench-allreduce` all-reduces after each size to count nccl-tests'
// #wrong, and their sums. Each element's sum must come out exact from any correct all-reduce,
// whatever order it adds the ranks in and however often it rounds: MPI_Allreduce and a ring
// round bfloat16 after every hop. So every value is a small whole number and at most 64 ranks
// contribute to an element (rank r to the elements i with r = i mod ceil(world / 64)): each adds
// 1 + (r + i) mod 3, and the first of them (r < ceil(world / 64)) i mod 5 on top. Every partial
// sum is a whole number of at most 64 x 3 + 4 = 196, which bfloat16 (8 significant bits: every
// whole number up to 256) holds exactly, as float does. Each rank contributes to some elements,
// so one left out of the sum is seen at any world size. The i mod 5 term makes the sums vary
// with a period of 5 or 15 at every world size: without it, 3, 6, 9... ranks summed to the same
// number everywhere, and a result shifted by a chunk (a ring that misplaced its segments) passed.
// Shifts by 1 and by any power of two are seen.
#include <cstddef>
#include <vector>

namespace dp {

class CheckValues {
 public:
  explicit CheckValues(int world);
  // Rank `rank`'s element i.
  float value(int rank, size_t i) const;
  // The sum of element i over the ranks.
  float sum(size_t i) const { return sums_[i % sums_.size()]; }

 private:
  size_t stride_;            // ranks contribute to every stride_-th element
  std::vector<float> sums_;  // of element i at i mod (15 stride_): the values repeat so
};

}  // namespace dp
