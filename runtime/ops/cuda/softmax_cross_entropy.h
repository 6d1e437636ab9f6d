#pragma once
// Softmax + negative log-likelihood on the GPU: the kernels behind a CUDA twin of
// nn::SoftmaxCrossEntropy (runtime/nn/cross_entropy.cpp), with the same numbers: a
// max-subtracted log-sum-exp per row, the mean over the batch, argmax with the first maximum
// winning ties, and a backward of scale * (softmax - onehot) / B.
//
// A bad label cannot be checked on the host before the launch (the labels are on the
// device), and a device-side assert would kill the context. Instead the forward records the
// first offending row in CrossEntropyStats, and read_cross_entropy_stats(), the one host sync
// a training step makes anyway to log its loss, turns it into a dp::Error naming the label.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dp::cuda {

// Written by the forward into device memory; read back with read_cross_entropy_stats().
struct CrossEntropyStats {
  float mean_loss;    // mean over the batch of the per-row loss
  int32_t correct;    // rows with argmax(logits) == label
  int32_t bad_row;    // lowest batch index whose label is outside [0, classes), or -1
  int32_t bad_label;  // the label at bad_row (valid when bad_row >= 0)
};

// logits, probs: row-major [batch, classes] float32; labels: [batch] int32; row_loss: [batch]
// float32 (the loss of each row, NaN for a row with a bad label); stats: one device struct.
// probs is kept for the backward. probs may not alias logits. batch, classes >= 1 and below
// 2^31. Enqueues three small kernels on `stream`; no sync.
void softmax_cross_entropy_forward(int64_t batch, int64_t classes, const float* logits,
                                   const int32_t* labels, float* probs, float* row_loss,
                                   CrossEntropyStats* stats, cudaStream_t stream);

// grad[r, j] = scale / batch * (probs[r, j] - (j == labels[r])): d(scale * mean loss)/d(logits).
// grad may equal probs (in place). A row with a bad label gets no onehot term (and no write
// out of bounds); the forward has already reported it.
void softmax_cross_entropy_backward(int64_t batch, int64_t classes, const float* probs,
                                    const int32_t* labels, float scale, float* grad,
                                    cudaStream_t stream);

// Waits for `stream`, copies the stats to the host and throws a dp::Error when a label was out
// of range (the message matches the CPU loss's). `classes` is only for the message.
CrossEntropyStats read_cross_entropy_stats(const CrossEntropyStats* stats, int64_t classes,
                                           cudaStream_t stream);

}  // namespace dp::cuda
