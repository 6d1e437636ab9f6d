#!/usr/bin/env bash
# tests/bench/sweep.py's bookkeeping, with its runs replaced by made-up results (a real sweep
# takes minutes): the CSV's efficiency column is samples/s / (ranks x the 1-rank samples/s of
# the same model and scaling); a sweep with a configuration that never ran, or --reps 0, writes
# nothing (--out defaults to the committed docs/plots); --plot-only without a 1-rank run writes
# no efficiency of 0.
source "$(dirname "$0")/lib.sh" "$@"
SWEEP="$(cd "$(dirname "$0")/../bench" && pwd)/sweep.py"

# sweep ARGS...: sweep.py's main() with ARGS; each run measures 1000 x ranks x 0.9^(ranks-1)
# samples/s (twice that under strong scaling), an efficiency of 0.9^(ranks-1), except the
# configuration named in $FAIL_CFG, which fails.
sweep() {
  python3 - "$SWEEP" "$@" <<'PY'
import importlib.util, os, shutil, sys
spec = importlib.util.spec_from_file_location("sweep", sys.argv[1])
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)
fail = os.environ.get("FAIL_CFG", "")

def run_one(args, cfg, tokens, work, i):
    figure, model, scaling, ranks, hosts = cfg[:5]
    if fail and ",".join(map(str, cfg)) == fail:
        return None
    rate = 1000.0 * ranks * 0.9 ** (ranks - 1) * (2 if scaling == "strong" else 1)
    return {"samples_per_s": rate, "step_ms": 10.0, "compute_ms": 8.0, "comm_ms": 3.0, "exposed_ms": 2.0,
            "hidden_ms": 1.0, "overlap_frac": 1 / 3, "batch": 128, "load": 0.5}

sweep.run_one = run_one
shutil.which = lambda name: None  # no gnuplot: the CSV and .dat files are what is checked
sys.argv = ["sweep.py", *sys.argv[2:]]
sweep.main()
PY
}

if sweep --out "$WORK/ok" --quick >"$WORK/log" 2>&1; then pass "a sweep exits 0"; else fail "sweep"; cat "$WORK/log"; fi
python3 - "$WORK/ok/sweep.csv" <<'PY' && pass "the efficiency column is filled" || fail "efficiency column"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert rows, "no rows"
for r in rows:
    ranks = int(r["ranks"])
    want = 0.9 ** (ranks - 1)
    assert r["efficiency"] != "", r
    assert abs(float(r["efficiency"]) - want) < 1e-9, (r, want)
PY
grep -q "^2,1800.0,0.900$" "$WORK/ok/scaling_mlp.dat" && pass "the plot's efficiency agrees" ||
  { fail "scaling_mlp.dat"; cat "$WORK/ok/scaling_mlp.dat"; }

# What a failed or empty sweep must leave alone.
mkdir -p "$WORK/kept"
echo "committed" >"$WORK/kept/sweep.csv"
kept() {  # kept WHAT: the directory holds the committed CSV and nothing else
  if [ "$(ls "$WORK/kept")" = sweep.csv ] && [ "$(cat "$WORK/kept/sweep.csv")" = committed ]; then
    pass "$1: nothing written"
  else
    fail "$1 wrote into --out: $(ls "$WORK/kept")"; cat "$WORK/kept/sweep.csv"
  fi
}
if sweep --out "$WORK/kept" --quick --reps 0 >"$WORK/log" 2>&1; then
  fail "--reps 0 accepted"
else
  grep -q -- "--reps 0: at least 1" "$WORK/log" && pass "--reps 0 refused" || { fail "--reps 0 message"; cat "$WORK/log"; }
fi
kept "--reps 0"
for cfg in "scaling,mlp,weak,2,1,none,25,on" "scaling,mlp,weak,1,1,none,25,on"; do
  if FAIL_CFG=$cfg sweep --out "$WORK/kept" --quick >"$WORK/log" 2>&1; then
    fail "a sweep with a failed configuration ($cfg) exits 0"
  else
    grep -q "1 of [0-9]* configuration(s) have no successful run" "$WORK/log" &&
      pass "a failed configuration ($cfg) is an error" || { fail "failed configuration message"; cat "$WORK/log"; }
  fi
  kept "a failed configuration ($cfg)"
done

# --plot-only from a CSV without the 1-rank run: no efficiency of 0 written.
mkdir -p "$WORK/nobase"
grep -v "^scaling,mlp,weak,1,1," "$WORK/ok/sweep.csv" >"$WORK/nobase/sweep.csv"
if sweep --out "$WORK/nobase" --plot-only >"$WORK/log" 2>&1; then
  fail "--plot-only without a 1-rank run exits 0"
else
  grep -q "no 1-rank run of mlp (weak scaling)" "$WORK/log" && pass "--plot-only without a 1-rank run is an error" ||
    { fail "no-base message"; cat "$WORK/log"; }
fi
[ "$(ls "$WORK/nobase")" = sweep.csv ] && pass "--plot-only without a 1-rank run: nothing written" ||
  fail "--plot-only without a 1-rank run wrote $(ls "$WORK/nobase")"
finish
