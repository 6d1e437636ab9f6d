#!/usr/bin/env bash
# `cmake --install`: dprun and dprun-netns go to PREFIX/bin, the sbatch scripts to
# PREFIX/share/dprun/slurm; the installed dprun runs from any folder, alone and under mpirun,
# with the library folders it was linked with (Open MPI's, CUDA's) in its RUNPATH. Before the
# install rules, `cmake --install` printed its configuration, installed nothing and exited 0.
source "$(dirname "$0")/lib.sh"
PREFIX="$WORK/prefix"

if out=$(cmake --install "$BUILD" --prefix "$PREFIX" 2>&1); then
  pass "cmake --install"
else
  fail "cmake --install: $out"
fi
for f in bin/dprun bin/dprun-netns; do
  [ -x "$PREFIX/$f" ] && pass "installed $f" || fail "no executable $PREFIX/$f"
done
for f in dprun-one-node.sbatch dprun-multi-node.sbatch; do
  [ -f "$PREFIX/share/dprun/slurm/$f" ] && pass "installed share/dprun/slurm/$f" ||
    fail "no $PREFIX/share/dprun/slurm/$f"
done

# From PATH, in a folder that is neither the source tree nor the build.
mkdir -p "$WORK/elsewhere"
cd "$WORK/elsewhere" || exit 1
export PATH="$PREFIX/bin:$PATH"
missing=$(ldd "$PREFIX/bin/dprun" | grep "not found")
[ -z "$missing" ] && pass "every library of the installed dprun resolves" ||
  fail "the installed dprun lacks libraries: $missing"
dprun --version | grep -q "^dprun [0-9]" && pass "dprun --version from PATH" ||
  fail "dprun --version from PATH: $(dprun --version 2>&1)"
QUICK=(--model mlp --data synthetic:128 --synthetic-test-size 32 --hidden 8 --batch-size 16
  --steps 3 -q --log-json run.jsonl)
if timeout 120 dprun "${QUICK[@]}" >one.out 2>&1 && [ -s run.jsonl ]; then
  pass "the installed dprun trains"
else
  fail "the installed dprun alone"; tail -3 one.out
fi
if timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 dprun "${QUICK[@]}" >two.out 2>&1; then
  pass "the installed dprun trains under mpirun -np 2"
else
  fail "the installed dprun under mpirun"; tail -3 two.out
fi
dprun-netns --help 2>&1 | grep -q "usage: dprun-netns" && pass "dprun-netns --help from PATH" ||
  fail "dprun-netns --help from PATH"
finish
