// main() for the multi-rank GoogleTest binaries: every rank runs every test; rank 0
// prints the usual report, other ranks print only their failures (prefixed with the
// rank), and the binary fails if any rank failed, so mpirun's exit status is the verdict.
#include <gtest/gtest.h>

#include <cstdio>

#include <mpi.h>
#include "runtime/comm/mpi_runtime.h"
#include "runtime/core/log.h"
#include "runtime/ops/cpu/blas_core.h"

namespace {

class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (r.failed()) {
      std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                   r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
    }
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  dp::use_best_openblas_core(argv);  // as dprun does: the same kernels, the same numbers
  dp::MpiRuntime mpi(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  int rank = mpi.info().rank;
  dp::log::set_rank(rank, mpi.info().size);
  if (rank != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && any_failed && !failed) std::fprintf(stderr, "a test failed on another rank\n");
  return any_failed;
}
