#pragma once
// Batches of a Dataset in the order a DistributedSampler gives this rank, optionally filled
// by a background thread one batch ahead (double buffering) so that reading and normalising
// the next batch overlaps the current step's compute.
//
//   DataLoader loader(train, sampler, 64);
//   for (uint64_t e = 0; e < epochs; ++e) {
//     loader.start_epoch(e);
//     while (const Batch* b = loader.next()) step(b->x, b->y);
//   }
//
// Memory: two Batch buffers of [batch_size, sample_numel] inputs and their targets are
// allocated once and reused for every step of every epoch; a batch_size above the samples the
// sampler yields in an epoch allocates only those (the epoch is then one smaller batch).
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "runtime/core/tensor.h"
#include "runtime/data/dataset.h"
#include "runtime/data/row_pool.h"
#include "samplers/distributed_sampler.h"

namespace dp {

struct Batch {
  // The dataset's input_dtype(): f32 [size, sample_numel] (features, flattened C*H*W pixels:
  // a CNN views it as [size] + sample_shape) or i32 [size, T] (tokens).
  Tensor x;
  // i32 [size] when the dataset's target_numel() is 1 (labels), else i32 [size, target_numel].
  Tensor y;
  size_t size = 0;  // batch_size, or fewer for the last batch of the epoch
  uint64_t epoch = 0;
  size_t index = 0;  // batch index within the epoch (skipped batches count)
};

class DataLoader {
 public:
  // The loader keeps references: dataset and sampler must outlive it, and nobody else may
  // call the sampler's set_epoch / set_start while the loader is in use. batch_size > 0;
  // the sampler's dataset size must equal dataset.size(). pin_memory (as in PyTorch's
  // DataLoader; needs a CUDA build) puts the batch buffers in page-locked memory, for
  // batches that are copied on to a GPU: the copy is then asynchronous, and the caller must
  // see it completed before it calls next() again (which lets the loader refill the buffer).
  // `workers` threads fill each batch together (rows split among them; the same batches for
  // any count): for datasets whose samples are expensive to produce (decoding, generation),
  // where one thread cannot keep up with a GPU.
  DataLoader(const Dataset& dataset, DistributedSampler& sampler, size_t batch_size,
             bool prefetch = true, bool pin_memory = false, size_t workers = 1);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Begins `epoch` (sampler.set_epoch) and skips its first skip_batches batches
  // (sampler.set_start(skip_batches * batch_size)): a run resumed after s steps of the epoch
  // passes s and sees exactly the batches it had not seen. skip_batches <= batches_per_epoch(),
  // else a dp::Error, and the loader goes on with the epoch it was in. Abandons whatever
  // remains of the previous epoch.
  void start_epoch(uint64_t epoch, size_t skip_batches = 0);
  // The next batch, or nullptr at the end of the epoch. The batch stays valid until the next
  // call to next() or start_epoch(). An error while filling it (also one raised on the
  // prefetch thread) is thrown here, and again by every later next() of that epoch.
  const Batch* next();

  // ceil(sampler.num_samples() / batch_size): the same on every rank in training mode.
  size_t batches_per_epoch() const;
  // The samples in the next `batches` batches next() returns (batch_size each, fewer for the
  // epoch's last): what a step of that many micro-batches weighs its losses by.
  size_t rows_in_next(size_t batches) const;
  size_t batch_size() const { return batch_size_; }
  bool prefetching() const { return prefetch_; }
  const Dataset& dataset() const { return dataset_; }
  const DistributedSampler& sampler() const { return sampler_; }

 private:
  // Fills b with batch `batch_index` of the current epoch; false when cancelled midway.
  bool fill(Batch& b, size_t batch_index);
  void worker();
  void schedule(size_t batch_index, int buf);  // prefetch: hands one fill to the worker
  void cancel_pending();                       // prefetch: waits until the worker is idle

  const Dataset& dataset_;
  DistributedSampler& sampler_;
  const size_t batch_size_;
  const size_t numel_;         // input elements per sample
  const size_t row_bytes_;     // input bytes per sample
  const size_t target_numel_;  // targets per sample
  const bool prefetch_;
  std::unique_ptr<RowPool> pool_;  // workers > 1

  Batch bufs_[2];
  Tensor full_x_[2], full_y_[2];  // the two allocations; Batch::x/y are views of them

  // Main-thread state of the current epoch.
  bool started_ = false;
  uint64_t epoch_ = 0;
  size_t skip_ = 0;        // batches skipped at start_epoch
  size_t next_index_ = 0;  // index of the batch the next next() returns
  size_t end_index_ = 0;   // batches_per_epoch()
  int last_buf_ = 1;       // buffer handed out last (the other one is filled first)
  std::exception_ptr error_;

  // Hand-off with the prefetch thread: at most one fill is outstanding at any time.
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<bool> cancel_{false};  // polled per sample by the worker, hence atomic
  bool job_pending_ = false;         // scheduled, not yet taken by the worker
  bool job_running_ = false;
  bool job_done_ = false;
  size_t job_index_ = 0;
  int job_buf_ = 0;
  std::exception_ptr job_error_;
  std::thread thread_;
};

}  // namespace dp
