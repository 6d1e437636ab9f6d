# Sourced by tests/sanitize/run.sh and tests/fuzz/run.sh: configures a clang build of the CPU
# path with sanitizers. The ASan build is shared: it is configured with the fuzz targets too, so
# that both scripts reuse one instrumented library instead of compiling it twice.
#   sanitize_configure asan|tsan    sets BUILD to the configured directory

sanitize_configure() {
  local kind=$1 flags
  case "$kind" in
    asan) flags=(-DDPRUN_SANITIZE=address,undefined -DDPRUN_FUZZ=ON) ;;
    tsan) flags=(-DDPRUN_SANITIZE=thread) ;;
    *) echo "sanitize_configure: unknown kind '$kind'" >&2; return 2 ;;
  esac
  BUILD=${DPRUN_SANITIZE_BUILD_ROOT:-.}/build-$kind
  # -O1: sanitizer reports keep their meaning and the build stays short; no NDEBUG.
  cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 \
    -DDPRUN_CUDA=OFF -DDPRUN_WERROR=ON "${flags[@]}" >/dev/null
}

# The environment every sanitized test and fuzzer runs in.
export OPENBLAS_NUM_THREADS=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
