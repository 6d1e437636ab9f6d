#pragma once
// A test fixture, never shipped in libdprun: N std::threads in one process act as N ranks
// (gloo's test pattern), so that multi-rank logic (the Reducer, the sampler) is tested in
// milliseconds, without mpirun.
//
// Matching: rank r's k-th collective meets every other rank's k-th collective. It runs when
// the last rank's call arrives: that call does the work for all ranks (outside the lock)
// and completes every rank's Work, so a Work is done only once the result is in its
// rank's tensor, and until then that rank computes on, as with a real backend.
//
// Mismatch: the k-th calls must have the same description (op, dtype, shape, root AND tag:
// stricter than MPI, which sees only counts, so that a Reducer reducing the wrong bucket is
// caught). Otherwise every rank's Work for that collective fails with a dp::Error naming
// both calls; no rank hangs on it and later collectives still match by number.
//
// A rank whose function throws inside run_ranks aborts the world: pending and later Works
// fail with "rank R failed: ...", so that the other ranks stop rather than wait forever.
#include <algorithm>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "runtime/comm/collective_checks.h"
#include "runtime/comm/process_group.h"
#include "runtime/core/error.h"
#include "runtime/core/half_float.h"

namespace dp::test {

class ThreadWorld;

class ThreadProcessGroup : public ProcessGroup {
 public:
  ThreadProcessGroup(ThreadWorld& world, int rank) : world_(world), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override;
  std::string backend() const override { return "threads"; }

  WorkPtr allreduce(Tensor& t, ReduceOp op, const std::string& tag = "allreduce") override;
  WorkPtr broadcast(Tensor& t, int root, const std::string& tag = "broadcast") override;
  WorkPtr allgather(const Tensor& in, Tensor& out, const std::string& tag = "allgather") override;
  WorkPtr barrier(const std::string& tag = "barrier",
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) override;

 private:
  ThreadWorld& world_;
  int rank_;
};

class ThreadWorld {
 public:
  explicit ThreadWorld(int n) : n_(n), next_seq_(size_t(n), 1) {
    DP_CHECK(n >= 1, "ThreadWorld needs at least one rank, got {}", n);
    for (int r = 0; r < n; ++r) groups_.push_back(std::make_unique<ThreadProcessGroup>(*this, r));
  }
  ThreadWorld(const ThreadWorld&) = delete;
  ThreadWorld& operator=(const ThreadWorld&) = delete;

  int size() const { return n_; }
  ThreadProcessGroup& group(int rank) { return *groups_.at(size_t(rank)); }

  // Fails every pending Work and every later one with `reason`.
  void abort(const std::string& reason) {
    std::vector<WorkPtr> pending;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (aborted_.empty()) aborted_ = reason;
      for (auto& [seq, slot] : slots_) {
        if (!slot.error.empty()) continue;  // its Works already failed with the mismatch
        for (auto& c : slot.calls) {
          if (c.work) pending.push_back(c.work);
        }
      }
      slots_.clear();
    }
    fail_all(pending, reason);
  }

 private:
  friend class ThreadProcessGroup;
  enum class Kind { allreduce, broadcast, allgather, barrier };
  struct Call {
    Kind kind = Kind::barrier;
    Tensor t;   // allreduce/broadcast: in place; allgather: the output
    Tensor in;  // allgather's input
    ReduceOp op = ReduceOp::sum;
    int root = 0;
    std::string description;
    std::chrono::milliseconds timeout{0};  // a barrier's own (0: the group's)
    WorkPtr work;
  };
  struct Slot {
    std::vector<Call> calls;
    int arrived = 0;
    int first_rank = -1;
    std::string error;
  };

  static void fail_all(const std::vector<WorkPtr>& works, const std::string& message) {
    for (const auto& w : works) w->mark_completed(std::make_exception_ptr(Error(message)));
  }

  WorkPtr submit(int rank, Call call) {
    std::vector<WorkPtr> failed;
    std::string error;
    std::vector<Call> ready;
    WorkPtr work;
    {
      std::lock_guard<std::mutex> lock(mu_);
      uint64_t seq = next_seq_[size_t(rank)]++;
      work = call.work = groups_[size_t(rank)]->make_work(call.description, seq, call.timeout);
      if (!aborted_.empty()) {
        error = aborted_;
        failed.push_back(work);
      } else {
        Slot& s = slots_[seq];
        if (s.calls.empty()) s.calls.resize(size_t(n_));
        if (s.arrived == 0) s.first_rank = rank;
        const Call& first = s.calls[size_t(s.first_rank)];
        if (s.error.empty() && s.arrived > 0 && first.description != call.description) {
          s.error = fmt::format(
              "collective #{} does not match across ranks: rank {} called {} but rank {} "
              "called {}",
              seq, s.first_rank, first.description, rank, call.description);
          for (const auto& c : s.calls) {
            if (c.work) failed.push_back(c.work);
          }
        }
        if (!s.error.empty()) {
          error = s.error;
          failed.push_back(work);
        }
        s.calls[size_t(rank)] = std::move(call);
        if (++s.arrived == n_) {
          if (s.error.empty()) ready = std::move(s.calls);
          slots_.erase(seq);
        }
      }
    }
    fail_all(failed, error);
    if (!ready.empty()) execute(ready);
    return work;
  }

  void execute(std::vector<Call>& calls) {
    for (auto& c : calls) c.work->mark_started();
    std::exception_ptr error;
    try {
      run(calls);
    } catch (...) {
      error = std::current_exception();
    }
    for (auto& c : calls) c.work->mark_completed(error);
  }

  void run(std::vector<Call>& calls) {
    const Call& c0 = calls[0];
    switch (c0.kind) {
      case Kind::allreduce:
        if (c0.t.dtype() == DType::f32) {
          reduce<float>(calls);
        } else if (c0.t.dtype() == DType::bf16) {
          reduce_half<bf16>(calls);
        } else if (c0.t.dtype() == DType::f16) {
          reduce_half<f16>(calls);
        } else {
          reduce<int32_t>(calls);
        }
        return;
      case Kind::broadcast:
        for (size_t r = 0; r < calls.size(); ++r) {
          if (int(r) != c0.root) calls[r].t.copy_(calls[size_t(c0.root)].t);
        }
        return;
      case Kind::allgather: {
        // Snapshots first: an input may be a view of some rank's output.
        std::vector<Tensor> ins;
        for (auto& c : calls) ins.push_back(c.in.clone());
        const size_t n = c0.in.numel();
        for (auto& c : calls) {
          for (size_t r = 0; r < ins.size(); ++r) c.t.view(r * n, {int64_t(n)}).copy_(ins[r]);
        }
        return;
      }
      case Kind::barrier:
        return;
    }
  }

  // Folds in rank order into one buffer that every rank then receives, so that all ranks
  // hold bitwise identical results, as DDP's replicas need.
  template <typename T>
  void reduce(std::vector<Call>& calls) {
    const size_t n = calls[0].t.numel();
    const ReduceOp op = calls[0].op;
    std::vector<T> acc(calls[0].t.template data<T>(), calls[0].t.template data<T>() + n);
    for (size_t r = 1; r < calls.size(); ++r) {
      const T* x = calls[r].t.template data<T>();
      for (size_t i = 0; i < n; ++i) {
        if (op == ReduceOp::min) {
          acc[i] = std::min(acc[i], x[i]);
        } else if (op == ReduceOp::max) {
          acc[i] = std::max(acc[i], x[i]);
        } else {
          acc[i] += x[i];
        }
      }
    }
    if (op == ReduceOp::avg) {
      const T scale = T(1) / T(calls.size());  // float only: checked before submit
      for (auto& v : acc) v *= scale;
    }
    for (auto& c : calls) {
      if (n) std::memcpy(c.t.raw(), acc.data(), n * sizeof(T));
    }
  }

  // bfloat16 and float16 (sum/avg only: checked before submit) as the MPI backend's
  // shared-memory path does it: widened, summed in float32 in rank order, scaled, rounded once.
  template <typename H>
  static void reduce_half(std::vector<Call>& calls) {
    const size_t n = calls[0].t.numel();
    std::vector<float> acc(n);
    for (size_t r = 0; r < calls.size(); ++r) {
      const H* x = calls[r].t.template data<H>();
      for (size_t i = 0; i < n; ++i) acc[i] = r == 0 ? widen(x[i]) : acc[i] + widen(x[i]);
    }
    const float scale = 1.0f / float(calls.size());
    std::vector<H> out(n);
    for (size_t i = 0; i < n; ++i) {
      out[i] = narrow<H>(calls[0].op == ReduceOp::avg ? acc[i] * scale : acc[i]);
    }
    for (auto& c : calls) {
      if (n) std::memcpy(c.t.raw(), out.data(), n * sizeof(H));
    }
  }

  const int n_;
  std::vector<std::unique_ptr<ThreadProcessGroup>> groups_;
  std::mutex mu_;
  std::vector<uint64_t> next_seq_;  // per rank: which collective its next call is
  std::map<uint64_t, Slot> slots_;  // collectives some but not all ranks have called
  std::string aborted_;
};

inline int ThreadProcessGroup::size() const {
  return world_.size();
}

inline WorkPtr ThreadProcessGroup::allreduce(Tensor& t, ReduceOp op, const std::string& tag) {
  check_allreduce(t, op, tag);
  ThreadWorld::Call c;
  c.kind = ThreadWorld::Kind::allreduce;
  c.t = t;
  c.op = op;
  c.description = describe_allreduce(t, op, tag);
  return world_.submit(rank_, std::move(c));
}

inline WorkPtr ThreadProcessGroup::broadcast(Tensor& t, int root, const std::string& tag) {
  check_broadcast(t, root, size(), tag);
  ThreadWorld::Call c;
  c.kind = ThreadWorld::Kind::broadcast;
  c.t = t;
  c.root = root;
  c.description = describe_broadcast(t, root, tag);
  return world_.submit(rank_, std::move(c));
}

inline WorkPtr ThreadProcessGroup::allgather(const Tensor& in, Tensor& out,
                                             const std::string& tag) {
  check_allgather(in, out, size(), tag);
  ThreadWorld::Call c;
  c.kind = ThreadWorld::Kind::allgather;
  c.t = out;
  c.in = in;
  c.description = describe_allgather(in, out, tag);
  return world_.submit(rank_, std::move(c));
}

inline WorkPtr ThreadProcessGroup::barrier(const std::string& tag,
                                           std::chrono::milliseconds timeout) {
  ThreadWorld::Call c;
  c.timeout = timeout;
  c.description = describe_barrier(tag);
  return world_.submit(rank_, std::move(c));
}

// Runs fn(group of rank r) on n threads, one per rank, and rethrows the first exception
// any rank threw (after aborting the world, so the others finish and are joined).
inline void run_ranks(int n, const std::function<void(ProcessGroup&)>& fn) {
  ThreadWorld world(n);
  std::mutex mu;
  std::exception_ptr first;
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      std::exception_ptr error;
      std::string what = "an exception that is not a std::exception";
      try {
        fn(world.group(r));
        return;
      } catch (const std::exception& e) {
        error = std::current_exception();
        what = e.what();
      } catch (...) {
        error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!first) first = error;
      }
      world.abort(fmt::format("rank {} failed: {}", r, what));
    });
  }
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

}  // namespace dp::test
