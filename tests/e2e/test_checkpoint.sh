#!/usr/bin/env bash
# Checkpoints, exact resume and preemption, end to end under mpirun: a run stopped anywhere
# (a signal at a step boundary, a writer killed mid-file, a rank killed with -9) and resumed
# ends with parameters bit-identical (cmp) to an uninterrupted run's; what cannot resume
# exactly is refused with both sides named; evaluation loads an N-rank checkpoint alone.
source "$(dirname "$0")/lib.sh" "$@"
cd "$WORK" || exit 1

MLP=(--data synthetic:2048 --model mlp --hidden 64,32 --epochs 2 --batch-size 32 --log-interval 1000
  --optimizer adamw --lr 1e-3 --weight-decay 0.1)
verify() {  # verify FILE: a complete, verifying checkpoint (read alone, one process, no training)
  "$DPRUN" "${MLP[@]}" --resume "$1" --eval-only --eval --eval-batches 1 -q >/dev/null 2>&1
}
# A run with --checkpoint-dir also saves at its last step: a signal that never came would leave
# a checkpoint of the end, a "resumed" run with nothing to train, and equal parameters. And a
# --resume that is not read trains from step 0 to the same end. So every resume below checks
# where the preempted run stopped and where the resumed one started, not only the parameters.
step_of() { local n=${1##*step-}; echo $((10#${n%.ckpt})); }  # step_of DIR/step-00000037.ckpt: 37
stopped_at() {  # stopped_at OUT CKPT: OUT's run was preempted after CKPT's step, its newest checkpoint
  local dir=${2%/*} newest
  newest=$(ls "$dir" 2>/dev/null | tail -1)
  grep -q "preempted by .* after step $(step_of "$2"): saved checkpoint $2" "$1" &&
    [ "$dir/$newest" = "$2" ] ||
    { echo "$1: not preempted after step $(step_of "$2"); $dir holds $(ls "$dir" 2>/dev/null | tr '\n' ' ')"; return 1; }
}
resumed_at() {  # resumed_at OUT CKPT: OUT's run (without -q) resumed from CKPT, at its step
  grep -q "resumed from $2 (step $(step_of "$2")," "$1" ||
    { echo "$1 does not say: resumed from $2 (step $(step_of "$2")"; return 1; }
}

# --- the reference: one uninterrupted run ---------------------------------------------------
mpi 2 "${MLP[@]}" --dump-params ref.bin >ref.out 2>&1 || { fail "reference run"; cat ref.out; }

# --- preempted by a signal at step 37 (mid epoch 2), resumed ---------------------------------
rc=0
DPRUN_FAULT_SIGNAL=rank=1,step=37,signal=USR1 mpi 2 "${MLP[@]}" \
  --checkpoint-dir ck --checkpoint-every 25 --dump-params pre.bin >pre.out 2>&1 || rc=$?
[ "$rc" = 0 ] && pass "a preempted run exits 0" || { fail "preempted run exited $rc"; cat pre.out; }
grep -q "preempted by .* after step 37: saved checkpoint ck/step-00000037.ckpt" pre.out &&
  pass "it says where it saved" || { fail "no preemption message"; cat pre.out; }
[ -f ck/step-00000025.ckpt ] && stopped_at pre.out ck/step-00000037.ckpt &&
  pass "scheduled and preemption checkpoints, 37 the newest" || fail "checkpoints: $(ls ck)"
[ ! -e pre.bin ] && pass "no --dump-params from a preempted run" || fail "a preempted run dumped its parameters"
mpi 2 "${MLP[@]}" --checkpoint-dir ck --resume auto --dump-params resumed.bin >res.out 2>&1 ||
  { fail "resume"; cat res.out; }
grep -q "resumed from ck/step-00000037.ckpt (step 37, epoch 2" res.out || { fail "did not resume from 37"; cat res.out; }
cmp -s ref.bin resumed.bin && pass "stopped at 37 and resumed: parameters bit-identical" ||
  fail "the resumed run's parameters differ from the uninterrupted run's"
mpi 2 "${MLP[@]}" --resume ck/step-00000025.ckpt --dump-params from25.bin >r25.out 2>&1 &&
  resumed_at r25.out ck/step-00000025.ckpt && cmp -s ref.bin from25.bin &&
  pass "resumed from an explicit older checkpoint: bit-identical" ||
  { fail "resume from step 25"; tail -3 r25.out; }
# Checkpoints name and size every parameter and state tensor on their own, arena or not.
mpi 2 "${MLP[@]}" --resume ck/step-00000025.ckpt --no-param-arena --dump-params noarena.bin >rna.out 2>&1 &&
  resumed_at rna.out ck/step-00000025.ckpt && cmp -s ref.bin noarena.bin &&
  pass "written on the parameter arena, resumed without it: bit-identical" ||
  { fail "resume with --no-param-arena"; tail -3 rna.out; }

# --- 4 ranks, several buckets, SGD with momentum: the bucket layout comes back too ------------
# The first step's gradient order rebuilds the buckets, and the checkpoint keeps that layout. The
# shared-memory sums do not depend on it, but the ring over MPI (buckets from 64 KiB) starts each
# chunk's sum at another rank: with --no-shm and a cap that puts fc2 and fc1 into one such bucket,
# whose range the rebuild changes, a resume on the first step's layout ends on other bits.
MLP4=(--data synthetic:2048 --model mlp --hidden 128,64 --epochs 1 --batch-size 16 --log-interval 1000
  --optimizer sgd --lr 0.05 --momentum 0.9 --nesterov --bucket-cap-mb 0.5 --first-bucket-mb 0.01 --no-shm)
mpi 4 "${MLP4[@]}" --dump-params ref4.bin >ref4.out 2>&1 || { fail "4-rank reference"; cat ref4.out; }
DPRUN_FAULT_SIGNAL=rank=3,step=11,signal=TERM mpi 4 "${MLP4[@]}" \
  --checkpoint-dir ck4 >pre4.out 2>&1 || { fail "4-rank preemption"; cat pre4.out; }
stopped_at pre4.out ck4/step-00000011.ckpt || fail "4-rank preemption"
mpi 4 "${MLP4[@]}" --checkpoint-dir ck4 --resume auto --dump-params res4.bin >res4.out 2>&1 ||
  { fail "4-rank resume"; cat res4.out; }
resumed_at res4.out ck4/step-00000011.ckpt || fail "4-rank resume"
python3 - <<'PY' && pass "the resumed run starts on the checkpoint's buckets, not the first step's" || fail "layout"
import json, re, struct
def meta(path):  # the "meta" section (runtime/train/checkpoint_file.h)
    d = open(path, "rb").read()
    pos = 16
    while pos < len(d):
        (n,) = struct.unpack_from("<I", d, pos)
        name = d[pos + 4:pos + 4 + n]
        (size,) = struct.unpack_from("<Q", d, pos + 4 + n)
        pos += 4 + n + 16
        if name == b"meta":
            return json.loads(d[pos:pos + size])
        pos += size
def layout(out):  # parameters per bucket, from the header's "#k: X MB, N params" lines
    return [int(n) for n in re.findall(r"^ +#\d+: [0-9.]+ MB, (\d+) params", open(out).read(), re.M)]
saved = [len(b) for b in meta("ck4/step-00000011.ckpt")["buckets"]]
assert layout("ref4.out") != saved, ("the rebuild kept the first layout: nothing to tell apart", saved)
assert layout("res4.out") == saved, (layout("res4.out"), saved)
PY
cmp -s ref4.bin res4.bin &&
  pass "4 ranks over MPI, $(grep -o '[0-9]* buckets' res4.out | head -1), SIGTERM at step 11: bit-identical" ||
  fail "4-rank resume differs"

# --- models with buffers and tied weights: cnn (SyncBatchNorm), gpt (accumulation, clipping) ---
exact() {  # exact NAME NP SIGNAL_SPEC ARGS...: preempted at a step and resumed == uninterrupted
  local name=$1 np=$2 spec=$3
  shift 3
  local step=${spec##*step=}
  local ckpt
  ckpt=$name.ck/step-$(printf %08d "${step%%,*}").ckpt
  mpi "$np" "$@" -q --dump-params "$name.ref" >"$name.out" 2>&1 || { echo "reference run failed"; return 1; }
  DPRUN_FAULT_SIGNAL=$spec mpi "$np" "$@" -q --checkpoint-dir "$name.ck" >>"$name.out" 2>&1 ||
    { echo "preempted run failed"; return 1; }
  stopped_at "$name.out" "$ckpt" || return 1
  # Without -q: the resumed run says where it started.
  mpi "$np" "$@" --checkpoint-dir "$name.ck" --resume auto --dump-params "$name.res" >>"$name.out" 2>&1 ||
    { echo "resumed run failed"; return 1; }
  resumed_at "$name.out" "$ckpt" || return 1
  cmp -s "$name.ref" "$name.res" || { echo "the parameters differ"; return 1; }
}
"$MAKE_IDX" idx --train 600 --test 100 --seed 3 --noise 60 >/dev/null || fail "make_idx"
exact cnn 2 rank=0,step=23,signal=USR1 --model cnn --channels 4,8 --fc-hidden 32 --data idx:idx \
  --batch-size 16 --epochs 2 --sync-batchnorm && pass "cnn with SyncBatchNorm: preempted at 23, resumed bit-identical" ||
  { fail "cnn exact resume"; tail -5 cnn.out; }
python3 -c "
import random
rng = random.Random(2); w = 'the cat sat on a mat and the dog ran to the red door'.split()
open('c.txt', 'w').write(''.join(' '.join(rng.choice(w) for _ in range(10)) + '.\\n' for i in range(300)))"
"$DPRUN" prepare-text --input c.txt --output t.bin --val-fraction 0 >/dev/null 2>&1 || fail "prepare-text"
exact gpt 2 rank=1,step=17,signal=TERM --model gpt --layers 2 --heads 2 --embed 32 --context 32 \
  --data tokens:t.bin --batch-size 4 --grad-accum 2 --steps 40 --clip-grad-norm 1 &&
  pass "gpt (tied head, 2 micro-batches, clipping): preempted at 17, resumed bit-identical" ||
  { fail "gpt exact resume"; tail -5 gpt.out; }
# The sample due at a stop's step (--sample-every) is printed by the resumed run.
GS=(--model gpt --layers 1 --heads 2 --embed 16 --context 16 --data tokens:t.bin --batch-size 4 --steps 10
  --sample-every 5 --sample-length 4 --checkpoint-dir gs.ck)
DPRUN_FAULT_SIGNAL=rank=0,step=5,signal=USR1 mpi 2 "${GS[@]}" >gs1.out 2>&1 &&
  mpi 2 "${GS[@]}" --resume auto >gs2.out 2>&1 && ! grep -q "sample at step" gs1.out &&
  grep -q "sample at step 5:" gs2.out && grep -q "sample at step 10:" gs2.out &&
  pass "a stop at a --sample-every step: the resumed run prints that step's sample" ||
  { fail "sample after a stop"; grep -h "sample at\|preempted\|resumed" gs1.out gs2.out; }

# --- a stop signal at an --eval-every step: the checkpoint first, the evaluation after resume --
# Slurm's grace period may not cover an evaluation over the test split. Also: a trailing "/" on
# --checkpoint-dir once made --keep-checkpoints 1 remove the checkpoint just written, and a run
# stopped inside its first epoch reported a train loss of 0.
EV=(--model mlp --hidden 32 --data idx:idx --batch-size 16 --epochs 1 --eval-every 4 --eval-batches 2
  --checkpoint-dir evck/ --keep-checkpoints 1)
DPRUN_FAULT_SIGNAL=rank=1,step=8,signal=USR1 mpi 2 "${EV[@]}" --log-json ev1.jsonl >ev1.out 2>&1 ||
  { fail "eval preemption run"; tail -3 ev1.out; }
stopped_at ev1.out evck/step-00000008.ckpt && pass "--checkpoint-dir DIR/ --keep-checkpoints 1 keeps the new checkpoint" ||
  { fail "evck holds: $(ls evck)"; tail -3 ev1.out; }
mpi 2 "${EV[@]}" --resume auto --log-json ev2.jsonl >ev2.out 2>&1 || { fail "eval resume"; tail -3 ev2.out; }
python3 - <<'PY' && pass "stopped at an eval step: no evaluation before the checkpoint, the resumed run evaluates it; train_loss null" || fail "eval around a stop signal"
import json
def recs(f, t): return [r for r in map(json.loads, open(f)) if r.get("type") == t]
before = [r["step"] for r in recs("ev1.jsonl", "eval")]
after = [r["step"] for r in recs("ev2.jsonl", "eval")]
summary = recs("ev1.jsonl", "summary")[-1]
print("evals before", before, "after", after, "train_loss", summary["train_loss"])
assert before == [4] and after[:2] == [8, 12] and summary["train_loss"] is None
PY
# wall_s goes on across the resume: one log of one training (it started again from 0).
python3 - <<'PY' && pass "wall_s goes on across a resume" || fail "wall_s across a resume"
import json
steps = [r for f in ("ev1.jsonl", "ev2.jsonl") for r in map(json.loads, open(f)) if r.get("type") == "step"]
walls = [r["wall_s"] for r in steps]
summary = [r for r in map(json.loads, open("ev2.jsonl")) if r.get("type") == "summary"][-1]
print("steps", [r["step"] for r in steps][6:10], "wall_s", walls[6:10], "summary", summary["wall_s"])
assert [r["step"] for r in steps][:9] == list(range(1, 10)) and walls == sorted(walls), walls
assert summary["wall_s"] >= walls[-1], (summary["wall_s"], walls[-1])
PY

# Stopped at an evaluation step, then at the run's last step (due "after the last one"): each
# resumed run makes up what the stop skipped; the train loss of the epoch that ended before
# the first stop is carried through the second (it read "stopped inside the first epoch").
# --eval-only appends its evaluation without a resume marker (which would void later lines).
EL=(--model mlp --hidden 32 --data idx:idx --batch-size 16 --steps 24 --eval-every 5 --eval-batches 2
  --checkpoint-dir evl)
DPRUN_FAULT_SIGNAL=rank=0,step=20,signal=USR1 mpi 2 "${EL[@]}" --log-json el1.jsonl >el1.out 2>&1 &&
  DPRUN_FAULT_SIGNAL=rank=1,step=24,signal=USR1 mpi 2 "${EL[@]}" --resume auto --log-json el2.jsonl >el2.out 2>&1 &&
  mpi 2 "${EL[@]}" --resume auto --log-json el3.jsonl >el3.out 2>&1 &&
  cp el3.jsonl el4.jsonl && mpi 2 "${EL[@]}" --resume evl/step-00000024.ckpt --eval-only --log-json el4.jsonl >el4.out 2>&1 ||
  { fail "eval-every runs stopped twice"; tail -3 el*.out; }
python3 - <<'PY' && pass "made up after each stop, the last step's too; train loss carried; --eval-only adds no marker" || fail "evaluations and train loss across two stops"
import json
def recs(f, t): return [r for r in map(json.loads, open(f)) if r.get("type") == t]
ev = [[r["step"] for r in recs(f"el{i}.jsonl", "eval")] for i in (1, 2, 3)]
loss = [recs(f"el{i}.jsonl", "summary")[-1]["train_loss"] for i in (1, 2)]
print("evals", ev, "train_loss", loss)
assert ev == [[5, 10, 15], [20], [24]], ev
assert loss[0] is not None and loss[1] == loss[0], loss
assert len(recs("el4.jsonl", "resume")) == len(recs("el3.jsonl", "resume"))
assert recs("el4.jsonl", "eval")[-1]["step"] == 24
PY

# --- a writer killed mid-file never damages the last good checkpoint --------------------------
cp -r ck ckk && rm -f ckk/step-00000064.ckpt
rc=0
DPRUN_FAULT_CHECKPOINT_KILL=bytes=20000 mpi 2 "${MLP[@]}" \
  --checkpoint-dir ckk --checkpoint-every 5 --resume auto >kill.out 2>&1 || rc=$?
[ "$rc" != 0 ] && pass "a run whose checkpoint writer is killed fails ($rc)" || fail "killed writer: exit 0"
ls -a ckk | grep -q '^\.step-00000040\.ckpt\.tmp\.' && pass "the killed writer left only a hidden temporary file" ||
  fail "no temporary file left by the killed writer: $(ls -a ckk)"
verify ckk/step-00000037.ckpt && pass "the last good checkpoint still verifies" || fail "step 37 damaged"
mpi 2 "${MLP[@]}" --checkpoint-dir ckk --resume auto --dump-params afterkill.bin >ak.out 2>&1 ||
  { fail "resume after a killed writer"; cat ak.out; }
resumed_at ak.out ckk/step-00000037.ckpt || fail "after a killed writer: not resumed from 37"
grep -q "skipped .*incomplete write" ak.out && pass "resume auto says it skipped the incomplete write" ||
  { fail "no note about the skipped temporary file"; cat ak.out; }
cmp -s ref.bin afterkill.bin && pass "resumed after a killed writer: bit-identical" || fail "differs after killed writer"
# --- rank 0's write outlasts --timeout (slow storage): the others' error says what they waited
# for and the cure, not only "collective #N (allgather ...) did not complete" -----------------
rc=0
start=$SECONDS
DPRUN_FAULT_STALL=rank=0,phase=checkpoint,seconds=6 mpi 2 "${MLP[@]}" --timeout 1 \
  --checkpoint-dir cks --checkpoint-every 5 >slow.out 2>&1 || rc=$?
[ "$rc" != 0 ] && [ $((SECONDS - start)) -lt 60 ] && pass "a checkpoint write longer than --timeout fails the job ($rc)" ||
  { fail "slow checkpoint write: exit $rc after $((SECONDS - start)) s"; cat slow.out; }
grep -q "\[rank 1\] step 5: the wait for checkpoint cks/step-00000005.ckpt timed out: rank 0 (pid [0-9]* on .*) writes it while the other ranks wait for its verdict, for at most --timeout (1 s); .*raise --timeout above the write time. .*wait\(s\|ing\) .* for rank 0" slow.out &&
  pass "the waiting rank names the checkpoint write, its step and the cure" || { fail "slow checkpoint message"; cat slow.out; }
# A damaged newest checkpoint is skipped, naming why.
cp -r ck ckd && truncate -s 1000 ckd/step-00000064.ckpt
mpi 2 "${MLP[@]}" --checkpoint-dir ckd --resume auto --steps 64 >dmg.out 2>&1
grep -q "skipped checkpoint ckd/step-00000064.ckpt: byte" dmg.out && grep -q "resumed from ckd/step-00000037.ckpt" dmg.out &&
  pass "a truncated newest checkpoint is skipped with the byte where it ends" || { fail "damaged newest"; cat dmg.out; }
# --keep-checkpoints 1 next to that damaged later step: the run resumes 37, is preempted at 40
# and keeps 40 (pruning by step alone kept the damaged 64 and removed 40 and 37).
cp -r ck ckp && truncate -s 1000 ckp/step-00000064.ckpt
rc=0
DPRUN_FAULT_SIGNAL=rank=1,step=40,signal=USR1 mpi 2 "${MLP[@]}" --checkpoint-dir ckp --resume auto \
  --keep-checkpoints 1 >keep.out 2>&1 || rc=$?
[ "$rc" = 0 ] && resumed_at keep.out ckp/step-00000037.ckpt &&
  grep -q "preempted by .* after step 40: saved checkpoint ckp/step-00000040.ckpt" keep.out &&
  verify ckp/step-00000040.ckpt && [ ! -e ckp/step-00000037.ckpt ] && [ ! -e ckp/step-00000025.ckpt ] &&
  [ -e ckp/step-00000064.ckpt ] && grep -q "keep-checkpoints: ckp holds 1 checkpoint(s) of later steps" keep.out &&
  pass "--keep-checkpoints 1 keeps the checkpoint just written, not a damaged later one" ||
  { fail "keep next to a damaged later step (exit $rc): $(ls ckp)"; grep -E "checkpoint|error" keep.out; }

# --- a rank killed with -9: the others exit non-zero and write no checkpoint ------------------
# last_rank JOB: the newest dprun rank that JOB's mpirun (the child of `timeout` JOB) started,
# found by parentage: a pattern over command lines also matches timeout and mpirun themselves,
# and after a PID wrap-around the newest of those need not be a rank.
last_rank() { pgrep -P "$(pgrep -P "$1" | head -1)" -x "$(basename "$DPRUN")" | tail -1; }
LONG=(--data synthetic:4096 --model mlp --hidden 256 --epochs 400 --batch-size 32 --log-interval 100000)
timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$DPRUN" "${LONG[@]}" \
  --checkpoint-dir ck9 --checkpoint-every 20 >k9.out 2>&1 &
job=$!
for _ in $(seq 100); do [ -f ck9/step-00000040.ckpt ] && break; sleep 0.2; done
victim=$(last_rank "$job")
kill -9 "$victim" 2>/dev/null
start=$(date +%s)
rc=0
wait "$job" || rc=$?
took=$(($(date +%s) - start))
[ "$rc" != 0 ] && [ "$took" -lt 60 ] && pass "kill -9 of a rank: the job exits $rc within ${took}s" ||
  { fail "kill -9 of a rank: exit $rc after ${took}s"; tail -5 k9.out; }
newest=$(ls ck9/step-*.ckpt | tail -1)
[ -z "$(ls -A ck9 | grep tmp)" ] && pass "no checkpoint was started after the peer died" || fail "temp files left: $(ls -a ck9)"
"$DPRUN" "${LONG[@]}" --resume "$newest" --eval-only --eval --eval-batches 1 -q >/dev/null 2>&1 &&
  pass "the newest checkpoint ($newest) verifies" || fail "$newest does not verify"

# --- the same over MPI/TCP (--no-shm): no barrier names the missing rank, the survivor does ----
# mpirun SIGTERMs the survivor and SIGKILLs it a second later: it checks its host's ranks with
# kill(pid, 0) (runtime/train/peer_watch.h) and says which one is gone before that.
timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$DPRUN" "${LONG[@]}" --no-shm \
  --checkpoint-dir ck9t --checkpoint-every 20 >k9t.out 2>&1 &
job=$!
for _ in $(seq 100); do [ -f ck9t/step-00000040.ckpt ] && break; sleep 0.2; done
victim=$(last_rank "$job")
kill -9 "$victim" 2>/dev/null
rc=0
wait "$job" || rc=$?
[ "$rc" != 0 ] && pass "--no-shm, kill -9 of a rank: the job exits $rc" || fail "--no-shm kill -9: exit 0"
grep -q "dprun: error: \[rank [01]\] got SIGTERM, but rank [01] (pid $victim on $(hostname)) is gone: not checkpointing; exiting" k9t.out &&
  pass "--no-shm: the survivor names the rank that is gone (pid $victim)" ||
  { fail "--no-shm: the survivor did not name rank with pid $victim"; tail -12 k9t.out; }
[ -z "$(ls -A ck9t | grep tmp)" ] && pass "--no-shm: no checkpoint was started after the peer died" ||
  fail "--no-shm: temp files left: $(ls -a ck9t)"

# --- a rank in another pid namespace of this host is not taken for gone --------------------
# Containers that share the node's hostname (Docker --net=host, Kubernetes hostNetwork) but not
# its pids: rank 1, in a pid namespace of its own, got its signal while rank 0 was still busy
# and once took ESRCH for rank 0's pid as "gone", ending the job without a checkpoint.
if unshare --pid --fork --mount-proc true 2>/dev/null; then
  rc=0
  DPRUN_FAULT_SIGNAL=rank=1,step=5,signal=TERM DPRUN_FAULT_STALL=rank=0,step=5,seconds=2 \
    timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -x DPRUN_FAULT_SIGNAL -x DPRUN_FAULT_STALL \
    -np 1 "$DPRUN" "${MLP[@]}" --checkpoint-dir ckns : \
    -np 1 unshare --pid --fork --mount-proc "$DPRUN" "${MLP[@]}" --checkpoint-dir ckns >pidns.out 2>&1 || rc=$?
  [ "$rc" = 0 ] && stopped_at pidns.out ckns/step-00000005.ckpt && ! grep -q "is gone" pidns.out &&
    pass "a rank in its own pid namespace: checkpoint at step 5, exit 0" ||
    { fail "pid namespace (exit $rc)"; cat pidns.out; }
else
  echo "SKIP pid namespace case: unshare --pid is not allowed here"
fi

# --- a second signal exits at once -------------------------------------------------------------
DPRUN_FAULT_SIGNAL=rank=1,step=5,signal=USR1 DPRUN_FAULT_STALL=rank=1,step=5,seconds=60 \
  timeout 60 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 -x DPRUN_FAULT_SIGNAL -x DPRUN_FAULT_STALL \
  "$DPRUN" "${MLP[@]}" --checkpoint-dir ck2x >twice.out 2>&1 &
job=$!
for _ in $(seq 100); do grep -q "stalling" twice.out 2>/dev/null && break; sleep 0.2; done
start=$(date +%s)
pkill -USR1 -f "checkpoint-dir ck2x" -P "$(pgrep -f "^$MPIEXEC.*ck2x" | head -1)" 2>/dev/null ||
  pkill -USR1 -f "dprun .*checkpoint-dir ck2x"
rc=0
wait "$job" || rc=$?
took=$(($(date +%s) - start))
grep -q "got SIGUSR1 again: exiting now" twice.out && [ "$took" -lt 20 ] && [ "$rc" != 0 ] &&
  pass "a second signal exits at once (${took}s, exit $rc)" || { fail "second signal: ${took}s, exit $rc"; cat twice.out; }

# --- a signal while the ranks still load their data: a checkpoint after the first step ------
DPRUN_FAULT_STALL=rank=0,step=0,seconds=3 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 \
  "$DPRUN" "${MLP[@]}" --checkpoint-dir ckst >start.out 2>&1 &
job=$!
(sleep 100 && kill -9 "$job") 2>/dev/null &
watchdog=$!
for _ in $(seq 100); do grep -q "stalling" start.out 2>/dev/null && break; sleep 0.1; done
kill -USR1 "$job"  # mpirun passes SIGUSR1 on to the ranks
rc=0
wait "$job" || rc=$?
kill "$watchdog" 2>/dev/null
[ "$rc" = 0 ] && [ -f ckst/step-00000001.ckpt ] && pass "a signal during start-up: checkpoint after step 1, exit 0" ||
  { fail "signal during start-up (exit $rc)"; cat start.out; }

# --- what cannot resume exactly is refused, on every rank, naming both sides ------------------
rc=0
mpi 2 "${MLP[@]}" --lr 0.002 --checkpoint-dir ck --resume auto >lr.out 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$(grep -c 'the checkpoint was written with --lr 0.001, this run has --lr 0.002' lr.out)" = 2 ] &&
  pass "another --lr is refused on every rank" || { fail "--lr mismatch (exit $rc)"; cat lr.out; }
rc=0
mpi 4 "${MLP[@]}" --checkpoint-dir ck --resume ck/step-00000037.ckpt >ws.out 2>&1 || rc=$?
grep -q "written by 2 rank(s) x batch 32 x accumulation 1 = global batch 64; this run has 4 rank(s) x 32 x 1 = 128" ws.out &&
  [ "$rc" != 0 ] && pass "4 ranks on a 2-rank checkpoint with another global batch: refused" || { fail "world size"; cat ws.out; }
mpi 4 "${MLP[@]}" --batch-size 16 --resume ck/step-00000037.ckpt --dump-params ws4.bin >ws4.out 2>&1 &&
  resumed_at ws4.out ck/step-00000037.ckpt && grep -q "the same global batch of 64" ws4.out &&
  pass "4 ranks x 16 resume a 2 x 32 checkpoint, said aloud" ||
  { fail "same global batch on 4 ranks"; cat ws4.out; }
python3 - <<'PY' && pass "... and end within 1e-4 of the 2-rank run" || fail "4-rank continuation drifted"
import struct
a = open("ref.bin", "rb").read(); b = open("ws4.bin", "rb").read()
x = struct.unpack(f"{len(a)//4}f", a); y = struct.unpack(f"{len(b)//4}f", b)
assert len(x) == len(y) and max(abs(p - q) for p, q in zip(x, y)) < 1e-4
PY
rc=0
mpi 2 "${MLP[@]}" --resume ck/nope.ckpt >nf.out 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "ck/nope.ckpt: cannot open" nf.out && pass "a missing --resume file is named" ||
  { fail "missing resume file"; cat nf.out; }
rc=0
DPRUN_FAULT_SIGNAL=rank=0,step=3,signal=INT mpi 2 "${MLP[@]}" >nodir.out 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "no --checkpoint-dir, so nothing was saved" nodir.out &&
  grep -q "got SIGINT: stopping after the current step (this run writes no checkpoint" nodir.out &&
  ! grep -q "with a checkpoint" nodir.out &&
  pass "a signal without --checkpoint-dir: exit $rc, says nothing was saved" || { fail "no dir + signal"; cat nodir.out; }
rc=0
mpi 2 "${MLP[@]}" --checkpoint-dir /proc/no/such >bad.out 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "checkpoint-dir /proc/no/such" bad.out && ! grep -q "^epoch" bad.out &&
  pass "an unusable --checkpoint-dir is found before training" || { fail "bad checkpoint dir"; cat bad.out; }

# --- evaluation and sampling: one process, a checkpoint written by 2 ranks ----------------------
python3 - corpus.txt <<'PY'
import random, sys
rng = random.Random(2)
words = "the cat sat on a mat and the dog ran to the red door while birds sang".split()
with open(sys.argv[1], "w") as f:
    for i in range(300):
        f.write(" ".join(rng.choice(words) for _ in range(rng.randint(6, 14))) + ".\n")
PY
"$DPRUN" prepare-text --input corpus.txt --output train.bin --val-output val.bin --val-fraction 0.1 >/dev/null 2>&1 ||
  fail "prepare-text"
GPT=(--model gpt --layers 2 --heads 2 --embed 32 --context 32 --data tokens:train.bin --val-data tokens:val.bin
  --batch-size 8 --seed 1 --eval-batches 4 --eval-batch-size 8)
mpi 2 "${GPT[@]}" --steps 30 --eval-every 30 --checkpoint-dir gck --log-json g.jsonl >g.out 2>&1 || { fail "gpt run"; cat g.out; }
"$DPRUN" --model gpt --layers 2 --heads 2 --embed 32 --context 32 --data tokens:train.bin --val-data tokens:val.bin \
  --resume gck/step-00000030.ckpt --eval-only --eval --eval-batches 8 --eval-batch-size 8 --sample-every 1 --sample-length 40 \
  --log-json ge.jsonl >ge.out 2>&1 || { fail "eval-only on one process"; cat ge.out; }
python3 - <<'PY' && pass "one process evaluates the 2-rank checkpoint to the same validation loss" || fail "eval-only loss differs"
import json
a = [json.loads(l) for l in open("g.jsonl") if '"eval"' in l][-1]["test_loss"]
b = [json.loads(l) for l in open("ge.jsonl") if '"eval"' in l][-1]["test_loss"]
assert abs(a - b) < 1e-4 * abs(a), (a, b)
PY
grep -q "sample at step 30" ge.out && pass "and prints a sample" || { fail "no sample from eval-only"; cat ge.out; }
rc=0
"$DPRUN" --model gpt --layers 2 --heads 4 --embed 32 --context 32 --data tokens:train.bin --val-data tokens:val.bin \
  --resume gck/step-00000030.ckpt --eval-only --eval >gh.out 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "with --heads 2, this run has --heads 4" gh.out &&
  pass "evaluating with another --heads (same shapes) is refused" || { fail "heads mismatch"; cat gh.out; }

finish
