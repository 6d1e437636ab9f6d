#!/usr/bin/env bash
# The unit and multi-rank tests under AddressSanitizer + UndefinedBehaviorSanitizer, then under
# ThreadSanitizer: two clang builds of the CPU path (build-asan, build-tsan) that compile only
# the test binaries. Any report fails the run (UBSan is built with -fno-sanitize-recover).
#   bash tests/sanitize/run.sh [asan|tsan]    (default: both)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/sanitize/common.sh
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(asan tsan)
jobs=$(getconf _NPROCESSORS_ONLN)
start=$SECONDS

for kind in "${kinds[@]}"; do
  echo "== sanitize: $kind: build"
  sanitize_configure "$kind"
  cmake --build "$BUILD" -j"$jobs" --target dprun_unit_mpi_tests >"$BUILD/sanitize-build.log" 2>&1 ||
    { tail -50 "$BUILD/sanitize-build.log"; exit 1; }
  case "$kind" in
    asan)
      echo "== sanitize: asan: unit tests"
      ASAN_OPTIONS=detect_leaks=1 ctest --test-dir "$BUILD" -L unit --output-on-failure -j"$jobs"
      # Open MPI leaks its own start-up allocations, many from components it has dlclose()d by
      # exit. The slow unwinder follows those stacks back into Open MPI's libraries, which the
      # suppressions name; a leak with no Open MPI frame is still reported.
      echo "== sanitize: asan: multi-rank tests"
      ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
        LSAN_OPTIONS=suppressions=$PWD/tests/sanitize/lsan-openmpi.supp \
        ctest --test-dir "$BUILD" -L mpi --output-on-failure -j"$jobs"
      ;;
    tsan)
      # ignore_noninstrumented_modules: TSan judges only memory accesses it sees whole. Open MPI
      # (its locks in dlopen()ed components, its progress threads) and libstdc++ (an
      # exception_ptr's reference count, freeing a failed Work's error on another thread) are
      # not instrumented; their synchronisation calls still count, their accesses and reports
      # inside them do not. A race in our own code is reported as usual.
      echo "== sanitize: tsan: unit and multi-rank tests"
      TSAN_OPTIONS=halt_on_error=1:ignore_noninstrumented_modules=1 \
        ctest --test-dir "$BUILD" -L 'unit|mpi' --output-on-failure -j"$jobs"
      ;;
  esac
done
echo "== sanitize: ${kinds[*]} passed in $((SECONDS - start)) s"
