#!/usr/bin/env bash
# Every bad input: a clear "dprun: error:" on EVERY rank, a non-zero exit, no hang, no
# stack trace.
source "$(dirname "$0")/lib.sh" "$@"

"$MAKE_IDX" "$WORK/good" --train 200 --test 50 --seed 1 >/dev/null || { echo "make_idx failed"; exit 1; }
"$MAKE_IDX" "$WORK/badmagic" --train 200 --test 50 --corrupt bad-magic >/dev/null
"$MAKE_IDX" "$WORK/truncated" --train 200 --test 50 --corrupt truncated >/dev/null
GOOD=(--data "idx:$WORK/good" --hidden 8 --epochs 1 --batch-size 10)

# expect NAME "message fragment" ARGS...: 2 ranks, both must report, exit non-zero.
expect() {
  local name=$1 msg=$2
  shift 2
  local rc=0
  mpi 2 "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  if [ "$rc" -eq 0 ]; then fail "$name: exit code 0"; return; fi
  if [ "$rc" -eq 124 ]; then fail "$name: hung (killed by timeout)"; return; fi
  for r in 0 1; do
    if ! grep -q "dprun: error: \[rank $r\]" "$WORK/err"; then
      fail "$name: rank $r printed no error"; cat "$WORK/err"; return
    fi
  done
  if ! grep -qi -- "$msg" "$WORK/err"; then fail "$name: message lacks '$msg'"; cat "$WORK/err"; return; fi
  if grep -qE "terminate called|Segmentation|core dumped|what\(\)" "$WORK/err"; then
    fail "$name: crashed instead of reporting"; cat "$WORK/err"; return
  fi
  pass "$name"
}

expect "unknown model" "unknown model" "${GOOD[@]}" --model resnet9000
expect "missing data directory" "$WORK/nowhere" --data "idx:$WORK/nowhere" --hidden 8
expect "batch size 0" "batch-size must be at least 1" "${GOOD[@]}" --batch-size 0
# Refused with the option's name before any collective (they failed later, through MPI_Abort:
# a bucket below one float, a timeout that rounds to 0 ms or overflows the deadline).
expect "bucket below one float" "--first-bucket-mb must be a number of MB of at least one float" \
  "${GOOD[@]}" --first-bucket-mb 1e-9
expect "timeout below 1 ms" "--timeout must be a number of seconds from 0.001" "${GOOD[@]}" --timeout 0.0004
expect "timeout beyond a year" "--timeout must be a number of seconds from 0.001" "${GOOD[@]}" --timeout 1e12
expect "unknown command" "unknown command 'predcit'" predcit "${GOOD[@]}"
# Evaluation limits without an evaluation were ignored silently.
expect "eval limit without eval" "--eval-batches and --eval-batch-size need --eval or --eval-every" \
  "${GOOD[@]}" --eval-batches 5
expect "eval batch without eval" "--eval-batches and --eval-batch-size need --eval" \
  "${GOOD[@]}" --eval-batch-size 5
# Another optimizer's options, and sampling options without --sample-every, were dropped
# silently (AdamW trained without the momentum asked for); a model's own training defaults
# (cnn: --momentum 0.9 --nesterov) still go with --optimizer adamw.
expect "momentum with adamw" "--momentum applies to --optimizer sgd (this run's is adamw" \
  "${GOOD[@]}" --optimizer adamw --momentum 0.9
expect "beta1 with sgd" "--beta1 applies to --optimizer adamw (this run's is sgd)" "${GOOD[@]}" --beta1 0.5
expect "a sampling option without --sample-every" "--sample-top-k needs --sample-every N" \
  "${GOOD[@]}" --sample-top-k 3
expect "a stray word" "unexpected word 'stray'" "${GOOD[@]}" stray
expect "world larger than dataset" "--data synthetic:1 holds 1 sample, fewer than the 2 ranks" --data synthetic:1 --hidden 8
# Token data: the samples are context windows, and the message says so.
python3 -c "
import struct, sys
open(sys.argv[1], 'wb').write(struct.pack('<256i', 20240520, 1, 10, 257, *[0] * 252) + struct.pack('<10H', *range(10)))
" "$WORK/ten.bin"
expect "fewer token windows than ranks" \
  "--data tokens:$WORK/ten.bin holds 10 tokens: 1 window of --context 8 + 1, fewer than the 2 ranks" \
  --model gpt --layers 1 --heads 1 --embed 8 --context 8 --data "tokens:$WORK/ten.bin" --steps 1
expect "synthetic test size 0" "--synthetic-test-size must be at least 1 (got 0)" --data synthetic:100 --hidden 8 \
  --synthetic-test-size 0
expect "synthetic size past 64 bits" "--data synthetic:99999999999999999999: at most 100000000" \
  --data synthetic:99999999999999999999 --hidden 8
expect "synthetic size too large" "--data synthetic:4000000000000: at most 100000000" \
  --data synthetic:4000000000000 --hidden 8
expect "synthetic size with a space" "--data synthetic: 5: expected synthetic:N" --data "synthetic: 5" --hidden 8
# An IDX test split whose images differ from the training split's: refused before training,
# naming both files (4x16 has the pixel count of 8x8 and was evaluated silently; 6x6 failed in a
# layer after training).
for shape in "4 16" "6 6"; do
  set -- $shape
  "$MAKE_IDX" "$WORK/shape" --train 100 --test 20 --rows 8 --cols 8 >/dev/null
  "$MAKE_IDX" "$WORK/shape-test" --train 1 --test 20 --rows "$1" --cols "$2" >/dev/null
  cp "$WORK"/shape-test/t10k-* "$WORK/shape/"
  expect "IDX test images ${1}x$2, training 8x8" \
    "--data idx:$WORK/shape: the test images '$WORK/shape/t10k-images-idx3-ubyte' are ${1}x$2 but the training images '$WORK/shape/train-images-idx3-ubyte' are 8x8" \
    --data "idx:$WORK/shape" --hidden 8 --epochs 1 --eval
done
set --
expect "unknown option" "unrecognised option\|unrecognized option" "${GOOD[@]}" --frobnicate
expect "malformed number" "invalid" "${GOOD[@]}" --lr fast
expect "bad hidden sizes" "separated by commas" "${GOOD[@]}" --hidden 32,x
# Too big for the machine: refused before any layer is built (the layers allocated one by one
# until the kernel killed the rank, or ended in "out of host memory" naming no option).
# (Sizes no machine holds: 2000 layers of 2^20, 8 PB of float32.)
HUGE=$(printf '1048576,%.0s' $(seq 2000)); HUGE=${HUGE%,}
expect "mlp too big" "mlp: 784 inputs, --hidden of 2000 layers (the widest 1048576), 10 classes make 2197926673645578 parameters" \
  --data "idx:$WORK/good" --hidden "$HUGE" --steps 1
expect "cnn too big" "cnn: 1x28x28 images, --channels 4294967297, --kernel-size 3" \
  --model cnn --data "idx:$WORK/good" --channels 4294967297 --steps 1
# A resumed run appends to --log-json: a file whose last line is no JSON record is not a log.
printf 'notes\nnot json' >"$WORK/notes.txt"
expect "log-json not a log" "its last line is not a JSON record" "${GOOD[@]}" --resume auto \
  --checkpoint-dir "$WORK/ck-notes" --log-json "$WORK/notes.txt"
expect "unknown data source" "unknown data" "${GOOD[@]}" --data hdf5:foo
expect "bad magic number" "magic" --data "idx:$WORK/badmagic" --hidden 8
expect "truncated file" "truncated" --data "idx:$WORK/truncated" --hidden 8
expect "zero bucket size" "bucket-cap-mb" "${GOOD[@]}" --bucket-cap-mb 0
expect "missing config file" "cannot open" "${GOOD[@]}" --config "$WORK/none.cfg"
expect "unknown optimizer" "unknown optimizer" "${GOOD[@]}" --optimizer lion
expect "grad-accum 0" "grad-accum" "${GOOD[@]}" --grad-accum 0
expect "nccl on cpu" "nccl" "${GOOD[@]}" --backend nccl
expect "cuda without gpu" "cuda" "${GOOD[@]}" --device cuda
# Refused as spelled, whatever GPUs the node has (std::stoi read cuda:1abc as cuda:1).
expect "device index with junk" "--device cuda:1abc: expected cuda:N" "${GOOD[@]}" --device cuda:1abc
# Failed in the first step ("view [0, 156800) out of range"), through MPI_Abort.
expect "absurd batch size" "--batch-size must be at most 2147483647" "${GOOD[@]}" \
  --batch-size 4611686018427387904
expect "diverging run" "diverged" "${GOOD[@]}" --lr 1e30
expect "unknown precision" "unknown precision" "${GOOD[@]}" --precision fp16
expect "unknown comm hook" "unknown comm hook 'powersgd'" "${GOOD[@]}" --comm-hook powersgd
expect "negative steps" "steps -5: expected a whole number" "${GOOD[@]}" --steps -5
expect "negative epochs" "epochs -1: expected a whole number" "${GOOD[@]}" --epochs -1
expect "negative batch size" "batch-size -1: expected a whole number" "${GOOD[@]}" --batch-size -1
expect "config is a directory" "is a directory" "${GOOD[@]}" --config "$WORK"
printf 'epochs = 1\n# a comment\nlr = fast\n' >"$WORK/bad.cfg"
expect "config value names file and line" "bad.cfg:3: lr = fast" "${GOOD[@]}" --config "$WORK/bad.cfg"
printf 'epochs = 1\nfrobnicate = 2\n' >"$WORK/bad2.cfg"
expect "config key names file and line" "bad2.cfg:2: unknown option 'frobnicate'" "${GOOD[@]}" --config "$WORK/bad2.cfg"
# A value that parses but fails a later check names the config file and line it came from...
printf 'epochs = 1\n# a comment\nbatch-size = 0\n' >"$WORK/late.cfg"
expect "config batch-size 0 names file and line" "batch-size must be at least 1 (got 0) (from $WORK/late.cfg:3)" \
  --data "idx:$WORK/good" --hidden 8 --config "$WORK/late.cfg"
printf 'hidden = 8\ndata = idx:%s/nope\n' "$WORK" >"$WORK/data.cfg"
expect "config data names file and line" "does not exist.*(from $WORK/data.cfg:2)" --config "$WORK/data.cfg"
printf 'data = idx:%s/good\nhidden = 32,x\n' "$WORK" >"$WORK/model.cfg"
expect "config model option names file and line" "separated by commas.*(from $WORK/model.cfg:2)" --config "$WORK/model.cfg"
# ...but not when the command line, which wins over the file, gave it.
printf 'batch-size = 10\n' >"$WORK/ok.cfg"
expect "command line over config: no file named" "batch-size must be at least 1 (got 0)$" \
  "${GOOD[@]}" --config "$WORK/ok.cfg" --batch-size 0
expect "dump to a device, found before training" "not a regular file" "${GOOD[@]}" --dump-params /dev/full
if [ -c /dev/full ]; then pass "/dev/full is still a device"; else fail "/dev/full was replaced"; fi
expect "trace in a missing directory" "does not exist" "${GOOD[@]}" --trace "$WORK/nowhere/trace.json"
# A cosine warm-up longer than the run names the option and its line (it said "lr schedule:
# warmup_steps 10 must be in [0, total_steps = 5]"): the run is --steps 5 long.
printf 'warmup-steps = 10\n' >"$WORK/w.cfg"
expect "warm-up longer than the run, from the config file" \
  "--warmup-steps 10 is longer than the run's 5 steps (--steps 5).*(from $WORK/w.cfg:1)" \
  --config "$WORK/w.cfg" --data synthetic:640 --hidden 8 --steps 5
# --epochs x steps per epoch wrapped around 2^64 (10 x 1844674407370955162 = 4 steps, exit 0).
expect "epochs past 2^63 steps" "--epochs 1844674407370955162 x 10 steps per epoch is more than" \
  --data synthetic:640 --hidden 8 --batch-size 32 --epochs 1844674407370955162

# Ranks started with different options (an MPMD launch): caught before any gradient moves.
rc=0
timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 1 "$DPRUN" "${GOOD[@]}" --batch-size 10 : \
  -np 1 "$DPRUN" "${GOOD[@]}" --batch-size 20 >"$WORK/out" 2>"$WORK/err" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "dprun: error: \[rank 0\].*--batch-size is '10' on rank 0 but '20' on rank 1" "$WORK/err" &&
   grep -q "dprun: error: \[rank 1\]" "$WORK/err"; then
  pass "different options on different ranks"
else
  fail "different options on different ranks (rc $rc)"; cat "$WORK/err"
fi
# A checkpoint directory on one rank only: its checkpoints would add collectives the other
# rank never joins (found before training, not as a timeout at the first checkpoint).
rc=0
timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 1 "$DPRUN" "${GOOD[@]}" --checkpoint-dir "$WORK/ck" : \
  -np 1 "$DPRUN" "${GOOD[@]}" >"$WORK/out" 2>"$WORK/err" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "dprun: error: \[rank 0\].*--checkpoint-dir is 'on' on rank 0 but 'off' on rank 1" "$WORK/err" &&
   grep -q "dprun: error: \[rank 1\]" "$WORK/err"; then
  pass "a checkpoint directory on one rank only"
else
  fail "a checkpoint directory on one rank only (rc $rc)"; cat "$WORK/err"
fi
# mixed NAME "message" NP MPIRUN-ARGS...: an MPMD launch of NP ranks in all; every rank must
# print an error naming the setting and exit non-zero, in time.
mixed() {
  local name=$1 msg=$2 np=$3 rc=0
  shift 3
  timeout 60 "$MPIEXEC" --allow-run-as-root --oversubscribe "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  if [ "$rc" -eq 0 ]; then fail "$name: exit code 0"; return; fi
  if [ "$rc" -eq 124 ]; then fail "$name: hung (killed by timeout)"; cat "$WORK/err"; return; fi
  for ((r = 0; r < np; r++)); do
    if ! grep -q -- "dprun: error: \[rank $r\].*$msg" "$WORK/err"; then
      fail "$name: rank $r did not name it ('$msg')"; cat "$WORK/err"; return
    fi
  done
  pass "$name"
}
# The settings that decide how the process group is built (which collectives each rank joins
# while building it) are compared before the group's set-up, not by the settings check that
# runs through it: a rank that differs would otherwise hang the others or fail with a raw MPI
# error.
QUICK=(--model mlp -q --steps 3 --batch-size 16 --timeout 10)
mixed "--allreduce-algo on one rank of one node" "--allreduce-algo is 'auto' on rank 0 but 'flat' on rank 1" 2 \
  -np 1 "$DPRUN" "${QUICK[@]}" : -np 1 "$DPRUN" "${QUICK[@]}" --allreduce-algo flat
mixed "--no-shm on one rank of one node" "--no-shm is 'off' on rank 0 but 'on' on rank 1" 2 \
  -np 1 "$DPRUN" "${QUICK[@]}" : -np 1 "$DPRUN" "${QUICK[@]}" --no-shm
mixed "--allreduce-algo on one rank of 2 nodes" "--allreduce-algo is 'auto' on rank 0 but 'flat' on rank 3" 4 \
  -x DPRUN_NODE_SPLIT=2 -np 3 "$DPRUN" "${QUICK[@]}" : -np 1 "$DPRUN" "${QUICK[@]}" --allreduce-algo flat
mixed "--no-shm on one rank of 2 nodes" "--no-shm is 'off' on rank 0 but 'on' on rank 3" 4 \
  -x DPRUN_NODE_SPLIT=2 -np 3 "$DPRUN" "${QUICK[@]}" : -np 1 "$DPRUN" "${QUICK[@]}" --no-shm
mixed "DPRUN_NODE_SPLIT on some ranks" "DPRUN_NODE_SPLIT is '2' on rank 0 but 'unset' on rank 2" 4 \
  -np 2 env DPRUN_NODE_SPLIT=2 "$DPRUN" "${QUICK[@]}" : -np 2 "$DPRUN" "${QUICK[@]}"
# Options that end a rank before the first agreement (--mode dp, --help, --version) given to
# one rank only: it once ended alone and left the others waiting until --timeout.
mixed "--mode dp on one rank" "\(ONE process, but the launcher started 2\|rank 1 failed reading its options\)" 2 \
  -np 1 "$DPRUN" "${QUICK[@]}" : -np 1 "$DPRUN" "${QUICK[@]}" --mode dp
mixed "--version on one rank" "\(--help or --version was given to this rank but not to rank 0\|rank 1 failed reading its options\)" 2 \
  -np 1 "$DPRUN" "${QUICK[@]}" : -np 1 "$DPRUN" "${QUICK[@]}" --version
rc=0
timeout 60 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$DPRUN" "${QUICK[@]}" --version >"$WORK/out" 2>"$WORK/err" || rc=$?
[ "$rc" = 0 ] && [ "$(wc -l <"$WORK/out")" = 1 ] && grep -qxE "dprun [0-9]+\.[0-9]+\.[0-9]+( \(.+\))?" "$WORK/out" &&
  pass "--version on every rank: printed once, exit 0" || { fail "--version on every rank (exit $rc)"; cat "$WORK/out" "$WORK/err"; }
# Without a launcher, --help, --version, --model list and --mode dp (one process) need no MPI:
# they work where MPI cannot start (here: a TMPDIR Open MPI cannot write its session directory
# in), and an option error beside --help is still an error naming it.
rc=0
TMPDIR=/proc "$DPRUN" --version >"$WORK/out" 2>"$WORK/err" &&
  TMPDIR=/proc "$DPRUN" --help | grep -q -- "--checkpoint-dir" &&
  TMPDIR=/proc "$DPRUN" --model list | grep -q "^Models" &&
  TMPDIR=/proc "$DPRUN" --mode dp --replicas 2 --data synthetic:256 --steps 2 --hidden 8 >"$WORK/dp.out" 2>&1 || rc=1
TMPDIR=/proc "$DPRUN" --help --frobnicate >"$WORK/out2" 2>"$WORK/err2" && rc=1
[ "$rc" = 0 ] && grep -qxE "dprun [0-9]+\.[0-9]+\.[0-9]+( \(.+\))?" "$WORK/out" &&
  grep -q "dprun: error: \[rank 0\] unrecognised option '--frobnicate'" "$WORK/err2" &&
  pass "--help, --version, --model list and --mode dp without MPI" ||
  { fail "--help/--version/--model list/--mode dp without MPI"; cat "$WORK/out" "$WORK/err" "$WORK/err2" "$WORK/dp.out"; }
# A --config read from a pipe is read once: parsed a second time it was empty, and the run
# trained the default model on the default data.
printf 'data = synthetic:256\nhidden = 16\nsteps = 1\n' | "$DPRUN" --config /dev/stdin >"$WORK/pipe.out" 2>&1 &&
  grep -q "^model .*mlp 784-16-10\|^model .*mlp [0-9]*-16-10" "$WORK/pipe.out" &&
  pass "a --config from a pipe is read once" || { fail "--config from a pipe"; cat "$WORK/pipe.out"; }
# Ranks on different data of the same sizes and shapes (another seed): caught by content.
"$MAKE_IDX" "$WORK/other" --train 200 --test 50 --seed 2 >/dev/null
rc=0
timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 1 "$DPRUN" "${GOOD[@]}" : \
  -np 1 "$DPRUN" "${GOOD[@]}" --data "idx:$WORK/other" >"$WORK/out" 2>"$WORK/err" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "dprun: error: \[rank 0\].*training data content.*on rank 0 but" "$WORK/err" &&
   grep -q "dprun: error: \[rank 1\]" "$WORK/err"; then
  pass "different data of the same shape on different ranks"
else
  fail "different data on different ranks (rc $rc)"; cat "$WORK/err"
fi
finish
