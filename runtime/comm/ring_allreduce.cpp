#include "runtime/comm/ring_allreduce.h"

#include <algorithm>

namespace dp {

namespace {

// Chunk c of n covers [begin(c), begin(c + 1)): sizes differ by at most one element.
size_t chunk_begin(size_t count, int n, int c) {
  return count / n * c + std::min<size_t>(c, count % n);
}

}  // namespace

RingResult ring_allreduce_f32(float* data, size_t count, bool average, MPI_Comm comm,
                              std::vector<float>& scratch, FlightRecorder* recorder) {
  int rank = 0, n = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &n);
  if (n == 1) return {};
  const int right = (rank + 1) % n, left = (rank + n - 1) % n;
  auto mod = [n](int v) { return ((v % n) + n) % n; };
  auto begin = [&](int c) { return chunk_begin(count, n, c); };
  auto size = [&](int c) { return begin(c + 1) - begin(c); };
  const size_t largest = count / n + (count % n ? 1 : 0);
  if (scratch.size() < largest) scratch.resize(largest);
  constexpr int kTag = 0x5249;  // "RI": this communicator is dedicated, the tag is for readers

  // Reduce-scatter: after step s, the chunk received at that step holds s + 2 ranks' sum.
  for (int s = 0; s < n - 1; ++s) {
    const int send_c = mod(rank - s), recv_c = mod(rank - s - 1);
    const size_t rn = size(recv_c);
    WaitingFor waiting(recorder, left, "ring reduce-scatter");
    int e = MPI_Sendrecv(data + begin(send_c), static_cast<int>(size(send_c)), MPI_FLOAT, right,
                         kTag, scratch.data(), static_cast<int>(rn), MPI_FLOAT, left, kTag, comm,
                         MPI_STATUS_IGNORE);
    if (e != MPI_SUCCESS) return {e, "MPI_Sendrecv (ring reduce-scatter)"};
    float* dst = data + begin(recv_c);
    const float* src = scratch.data();
    for (size_t i = 0; i < rn; ++i) dst[i] += src[i];
  }
  // This rank now owns the complete sum of chunk rank + 1.
  if (average) {
    const int own = mod(rank + 1);
    const float scale = 1.0f / static_cast<float>(n);
    float* p = data + begin(own);
    for (size_t i = 0, m = size(own); i < m; ++i) p[i] *= scale;
  }
  // All-gather: pass the finished chunks around the ring.
  for (int s = 0; s < n - 1; ++s) {
    const int send_c = mod(rank + 1 - s), recv_c = mod(rank - s);
    WaitingFor waiting(recorder, left, "ring all-gather");
    int e = MPI_Sendrecv(data + begin(send_c), static_cast<int>(size(send_c)), MPI_FLOAT, right,
                         kTag, data + begin(recv_c), static_cast<int>(size(recv_c)), MPI_FLOAT,
                         left, kTag, comm, MPI_STATUS_IGNORE);
    if (e != MPI_SUCCESS) return {e, "MPI_Sendrecv (ring all-gather)"};
  }
  return {};
}

}  // namespace dp
