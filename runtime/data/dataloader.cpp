#include "runtime/data/dataloader.h"

#include <algorithm>
#include <utility>

#include "runtime/core/error.h"

namespace dp {

namespace {

Tensor host_buffer(const Shape& shape, DType dtype, bool pinned) {
  return pinned ? Tensor::pinned_zeros(shape, dtype) : Tensor::zeros(shape, dtype);
}

}  // namespace

DataLoader::DataLoader(const Dataset& dataset, DistributedSampler& sampler, size_t batch_size,
                       bool prefetch, bool pin_memory, size_t workers)
    : dataset_(dataset),
      sampler_(sampler),
      batch_size_(batch_size),
      numel_(dataset.sample_numel()),
      row_bytes_(numel_ * dtype_size(dataset.input_dtype())),
      target_numel_(dataset.target_numel()),
      prefetch_(prefetch) {
  DP_CHECK(batch_size > 0, "data loader: batch size must be > 0");
  DP_CHECK(sampler.dataset_size() == dataset.size(),
           "data loader: the sampler was built for {} samples but the dataset has {} ({})",
           sampler.dataset_size(), dataset.size(), dataset.describe());
  DP_CHECK(numel_ > 0, "data loader: the dataset's samples are empty ({})", dataset.describe());
  DP_CHECK(dataset.input_dtype() == DType::f32 || dataset.input_dtype() == DType::i32,
           "data loader: inputs of type {} are not supported (float32 or int32) ({})",
           dtype_name(dataset.input_dtype()), dataset.describe());
  DP_CHECK(target_numel_ > 0, "data loader: the dataset has no targets per sample ({})",
           dataset.describe());
  DP_CHECK(workers >= 1 && workers <= 256, "data loader: --num-workers must be in 1..256 (got {})",
           workers);
  if (workers > 1) pool_ = std::make_unique<RowPool>(workers);
  // No batch holds more rows than this rank's sampler yields in an epoch: --eval-batch-size
  // 100000000 over a shard of 1000 samples allocated 313 GB and aborted the job.
  const size_t rows = std::max<size_t>(1, std::min(batch_size, sampler.num_samples()));
  const int64_t b = static_cast<int64_t>(rows), n = static_cast<int64_t>(numel_);
  const Shape y_shape = target_numel_ == 1 ? Shape{b} : Shape{b, int64_t(target_numel_)};
  for (int k = 0; k < 2; ++k) {
    full_x_[k] = host_buffer({b, n}, dataset.input_dtype(), pin_memory);
    full_y_[k] = host_buffer(y_shape, DType::i32, pin_memory);
    bufs_[k].x = full_x_[k];
    bufs_[k].y = full_y_[k];
  }
  if (prefetch_) thread_ = std::thread([this] { worker(); });
}

DataLoader::~DataLoader() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    cancel_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

size_t DataLoader::batches_per_epoch() const {
  return (sampler_.num_samples() + batch_size_ - 1) / batch_size_;
}

size_t DataLoader::rows_in_next(size_t batches) const {
  const size_t n = sampler_.num_samples();
  const size_t first = std::min(n, next_index_ * batch_size_);
  return std::min(n - first, batches * batch_size_);
}

bool DataLoader::fill(Batch& b, size_t batch_index) {
  const std::vector<size_t>& order = sampler_.indices();
  const size_t first = (batch_index - skip_) * batch_size_;
  const size_t count = std::min(batch_size_, order.size() - first);
  const int64_t rows = static_cast<int64_t>(count);
  // Views are re-cut only when the size changes (the last batch and the one after it), so a
  // steady-state step allocates nothing, not even a Shape.
  const int k = &b == &bufs_[0] ? 0 : 1;
  if (b.x.dim(0) != rows) {
    b.x = full_x_[k].view(0, {rows, static_cast<int64_t>(numel_)});
    b.y = full_y_[k].view(
        0, target_numel_ == 1 ? Shape{rows} : Shape{rows, static_cast<int64_t>(target_numel_)});
  }
  char* x = static_cast<char*>(b.x.raw());
  int32_t* y = b.y.data<int32_t>();
  const int classes = dataset_.num_classes();
  auto rows_of = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      if (cancel_.load(std::memory_order_relaxed)) return;
      const size_t idx = order[first + i];
      int32_t* t = y + i * target_numel_;
      dataset_.fill(idx, x + i * row_bytes_, t);
      // A target out of range would index past the logits (or the embedding) in the loss:
      // caught here, naming the sample, rather than as garbage or a crash in a kernel.
      for (size_t j = 0; j < target_numel_; ++j) {
        if (t[j] >= 0 && t[j] < classes) continue;
        if (target_numel_ == 1)
          fail("data loader: sample {} has label {}, outside 0..{} ({})", idx, t[j], classes - 1,
               dataset_.describe());
        fail("data loader: sample {} has target {} at position {}, outside 0..{} ({})", idx, t[j],
             j, classes - 1, dataset_.describe());
      }
    }
  };
  if (pool_)
    pool_->run(count, rows_of);
  else
    rows_of(0, count);
  if (cancel_.load(std::memory_order_relaxed)) return false;
  b.size = count;
  b.epoch = epoch_;
  b.index = batch_index;
  return true;
}

void DataLoader::worker() {
  for (;;) {
    size_t index;
    int buf;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [this] { return stop_ || job_pending_; });
      if (stop_) return;
      job_pending_ = false;
      job_running_ = true;
      index = job_index_;
      buf = job_buf_;
    }
    std::exception_ptr err;
    try {
      fill(bufs_[buf], index);
    } catch (...) {
      err = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_running_ = false;
      job_done_ = true;
      job_error_ = std::move(err);  // handed over, not shared: the worker keeps no reference
    }
    cv_.notify_all();
  }
}

void DataLoader::schedule(size_t batch_index, int buf) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_index_ = batch_index;
    job_buf_ = buf;
    job_done_ = false;
    job_error_ = nullptr;
    job_pending_ = true;
  }
  cv_.notify_all();
}

void DataLoader::cancel_pending() {
  std::unique_lock<std::mutex> lk(mu_);
  job_pending_ = false;
  if (job_running_) {
    cancel_ = true;
    cv_.wait(lk, [this] { return !job_running_; });
    cancel_ = false;
  }
  job_done_ = false;
  job_error_ = nullptr;
}

void DataLoader::start_epoch(uint64_t epoch, size_t skip_batches) {
  // Checked before anything changes (the count is the same for every epoch): a refused start
  // leaves the current epoch as it was. Checked after the cancel, it left next() waiting
  // forever for a fill nobody had scheduled.
  const size_t total = batches_per_epoch();
  DP_CHECK(skip_batches <= total,
           "data loader: cannot skip {} batches of epoch {}: it has only {} batches of {} on "
           "rank {}",
           skip_batches, epoch, total, batch_size_, sampler_.rank());
  // The worker reads the sampler's list: it must be idle before the list changes.
  if (prefetch_) cancel_pending();
  sampler_.set_epoch(epoch);
  sampler_.set_start(std::min(skip_batches * batch_size_, sampler_.num_samples()));
  started_ = true;
  epoch_ = epoch;
  skip_ = skip_batches;
  next_index_ = skip_batches;
  end_index_ = total;
  error_ = nullptr;
  // The buffer the caller holds stays intact until its next next(): fill the other one.
  if (prefetch_ && next_index_ < end_index_) schedule(next_index_, 1 - last_buf_);
}

const Batch* DataLoader::next() {
  DP_CHECK(started_, "data loader: next() called before start_epoch()");
  if (error_) std::rethrow_exception(error_);
  if (next_index_ >= end_index_) return nullptr;
  int buf;
  if (prefetch_) {
    std::exception_ptr err;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [this] { return job_done_; });
      job_done_ = false;
      err = std::move(job_error_);
      job_error_ = nullptr;
      buf = job_buf_;
    }
    if (err) {
      error_ = err;
      std::rethrow_exception(err);
    }
  } else {
    buf = 1 - last_buf_;
    try {
      fill(bufs_[buf], next_index_);
    } catch (...) {
      error_ = std::current_exception();
      throw;
    }
  }
  last_buf_ = buf;
  ++next_index_;
  // Double buffering: the worker fills the other buffer (the one handed out last time, which
  // the caller has now released) while the caller works on this one.
  if (prefetch_ && next_index_ < end_index_) schedule(next_index_, 1 - buf);
  return &bufs_[buf];
}

}  // namespace dp
