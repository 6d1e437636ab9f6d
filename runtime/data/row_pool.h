#pragma once
// The threads that fill one batch together (the data loader's `workers`): batch rows are
// split into contiguous ranges, one per thread, the calling thread taking the first. Each
// sample lands at the same row whatever the thread count, so batches are identical for any
// number of workers. Threads live as long as the pool: a batch costs two wake-ups, no thread
// creation and no allocation.
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace dp {

class RowPool {
 public:
  // `threads` in total, the caller included: threads - 1 are started. threads >= 1.
  explicit RowPool(size_t threads);
  ~RowPool();
  RowPool(const RowPool&) = delete;
  RowPool& operator=(const RowPool&) = delete;

  size_t threads() const { return helpers_.size() + 1; }

  // Calls fn(begin, end) over a partition of [0, rows) and returns when every range is done.
  // An exception from a range is rethrown here (the lowest range's, so the error does not
  // depend on timing). Not reentrant: one run at a time.
  template <typename Fn>
  void run(size_t rows, Fn& fn) {
    run_erased(
        rows, [](void* f, size_t b, size_t e) { (*static_cast<Fn*>(f))(b, e); }, &fn);
  }

 private:
  using Thunk = void (*)(void*, size_t, size_t);
  void run_erased(size_t rows, Thunk thunk, void* fn);
  void range(size_t part, size_t& begin, size_t& end) const;
  void helper(size_t part);

  std::vector<std::thread> helpers_;
  std::vector<std::exception_ptr> errors_;  // one per range
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  bool stop_ = false;
  uint64_t generation_ = 0;  // bumped per run: a helper runs each generation once
  size_t pending_ = 0;       // helpers still working on this generation
  size_t rows_ = 0;
  Thunk thunk_ = nullptr;
  void* fn_ = nullptr;
};

}  // namespace dp
