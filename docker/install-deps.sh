#!/usr/bin/env bash
# The one list of what dprun needs from the distribution. README, .ci/run and the
# Dockerfile all call this script, so a dependency is added in exactly one place.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null ||
    { echo "install-deps.sh: installs system packages: run it as root (or install sudo)" >&2; exit 1; }
  SUDO=sudo
fi
$SUDO apt-get update -qq
# clang and libclang-rt-dev: libFuzzer and the sanitizer runtimes (tests/fuzz, tests/sanitize);
# llvm: llvm-symbolizer, which turns their stack traces into file:line.
# clang-format: the lint.clang_format test (tests/lint); clang-tidy: tests/lint/run_tidy.sh.
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake git ca-certificates \
  libopenmpi-dev openmpi-bin \
  libboost-program-options-dev \
  libopenblas-dev \
  zlib1g-dev \
  libfmt-dev \
  nlohmann-json3-dev \
  libgtest-dev \
  clang libclang-rt-dev llvm clang-format clang-tidy \
  dataset-fashion-mnist \
  fortunes \
  python3 gnuplot-nox \
  procps iproute2 \
  slurm-wlm munge libpmix-dev
# iproute2: ip and tc, which launcher/netns/dprun-netns (and tests/netns, sweep.py) need.
# procps: pgrep and pkill, which tests/e2e (test_checkpoint.sh, test_launch.sh) use to find
# and signal ranks; a bare Ubuntu image (the Dockerfile's base) does not have it.
# gnuplot-nox: tests/bench/sweep.py draws the scaling plots of docs/plots (PNG and SVG).
# slurm-wlm and munge: tests/slurm/ starts a one-node Slurm cluster on localhost and runs the
# sbatch scripts of launcher/slurm/ on it. `srun --mpi=pmix` is slurm-wlm-basic-plugins'
# mpi_pmix plugin, which dlopens libpmix.so (the unversioned name, from libpmix-dev).
