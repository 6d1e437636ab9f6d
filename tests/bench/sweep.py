#!/usr/bin/env python3
"""Scaling sweep: samples/s, scaling efficiency, per-step breakdown and bucket-size sensitivity
over ranks x emulated hosts x link rate x bucket size x overlap x model, written to CSV and drawn
with gnuplot as PNG and SVG.

  python3 tests/bench/sweep.py --build build --out docs/plots --quick     # under a minute on 2 cores
  python3 tests/bench/sweep.py --quick --models mlp,cnn,gpt               # the quick grid for every model
  python3 tests/bench/sweep.py --build build --out docs/plots             # the full grid (about 3 minutes at --reps 1)

Weak scaling keeps --batch-size per rank (the global batch grows with the ranks); strong scaling
keeps the global batch (per-rank batch = global / ranks). Runs of one figure are interleaved
(each configuration once, then again) so that a change of the machine's load hits them alike;
each point is the median over --reps runs. Hosts > 1 run under launcher/netns/dprun-netns
(needs root and ip netns; skipped with a note otherwise). Every row names the load average
during the run: on a small machine the TCP stack and other jobs compete with compute. Scaling
efficiency is samples/s / (ranks x samples/s of the 1-rank run of the same model and scaling).
A sweep writes every point or nothing: where a configuration has no successful run it exits
non-zero and leaves --out as it was.
"""
import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
NETNS = os.path.join(ROOT, "launcher", "netns", "dprun-netns")
FASHION = "/usr/share/datasets/fashion-mnist"

MODELS = {
    # name: (dprun options, per-rank batch)
    "mlp": (["--model", "mlp", "--hidden", "1024,1024,1024",
             "--data", f"idx:{FASHION}" if os.path.isdir(FASHION) else "synthetic:60000"], 128),
    "cnn": (["--model", "cnn", "--data", f"idx:{FASHION}" if os.path.isdir(FASHION) else "synthetic:60000"], 32),
    "gpt": (["--model", "gpt", "--preset", "gpt-tiny", "--data", "tokens:{tokens}"], 8),
}
FIELDS = ["figure", "model", "scaling", "ranks", "hosts", "rate", "buckets", "overlap", "batch",
          "samples_per_s", "step_ms", "compute_ms", "comm_ms", "exposed_ms", "hidden_ms", "overlap_frac",
          "efficiency", "load"]


def grid(quick, can_netns, models=None):
    """(figure, model, scaling, ranks, hosts, rate, buckets, overlap) tuples."""
    models = models or (["mlp"] if quick else ["mlp", "cnn", "gpt"])
    ranks = [1, 2] if quick else [1, 2, 4]
    hosts = [1] + ([2] if can_netns else []) if quick else [1] + ([2, 4] if can_netns else [])
    rates = ["2gbit"] if quick else ["1gbit", "10gbit"]
    buckets = ["25", "4", "auto"] if quick else ["1", "4", "25", "auto"]
    out = []
    for m in models:
        for scaling in (["weak"] if quick else ["weak", "strong"]):
            for r in ranks:
                out.append(("scaling", m, scaling, r, 1, "none", "25", "on"))
            for h in hosts[1:]:
                for rate in rates:
                    out.append(("scaling", m, scaling, h, h, rate, "25", "on"))
        h = hosts[-1]
        for b in buckets:
            for ov in ["on", "off"]:
                out.append(("buckets", m, "weak", max(2, h), h, rates[0] if h > 1 else "none", b, ov))
    return out


def run_one(args, cfg, tokens, work, i):
    figure, model, scaling, ranks, hosts, rate, buckets, overlap = cfg
    opts, batch = MODELS[model]
    opts = [o.replace("{tokens}", tokens) for o in opts]
    if scaling == "strong":
        batch = max(1, batch * 2 // ranks)  # the global batch of 2 ranks, whatever the count
    log = os.path.join(work, f"run{i}.jsonl")
    dprun = [os.path.join(args.build, "dprun"), *opts, "--batch-size", str(batch), "--steps", str(args.steps),
             "--log-interval", "100000", "--log-json", log, "-q", "--timeout", "120"]
    if buckets == "auto":
        dprun += ["--bucket-cap-mb", "auto", "--first-bucket-mb", "auto"]
    else:
        dprun += ["--bucket-cap-mb", buckets]
    if overlap == "off":
        dprun.append("--no-overlap")
    if hosts > 1:
        per_host = max(1, ranks // hosts)
        cmd = [NETNS, "--hosts", str(hosts), "--ranks-per-host", str(per_host)]
        if rate != "none":
            cmd += ["--rate", rate]
        cmd += ["--", *dprun]
    else:
        cmd = [args.mpirun, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", str(ranks), *dprun]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    load0 = os.getloadavg()[0]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=900)
    if p.returncode != 0:
        sys.stderr.write(f"run failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-2000:]}\n")
        return None
    steps = [json.loads(l) for l in open(log) if '"type":"step"' in l.replace(" ", "")]
    steps = steps[len(steps) // 4:]  # warm-up (and auto buckets' profiling) excluded
    med = lambda k: statistics.median(s.get(k, 0.0) for s in steps)
    step_ms, comm, exposed = med("step_ms"), med("comm_ms"), med("exposed_comm_ms")
    return {
        "samples_per_s": statistics.median(s["samples_per_s"] for s in steps),
        "step_ms": step_ms,
        "compute_ms": med("forward_ms") + med("backward_ms") + med("optimizer_ms") + med("data_ms"),
        "comm_ms": comm,
        "exposed_ms": exposed,
        "hidden_ms": max(0.0, comm - exposed),
        "overlap_frac": 1 - exposed / comm if comm > 0 else 0,
        "batch": batch,
        "load": round((load0 + os.getloadavg()[0]) / 2, 2),
    }


GNUPLOT = r"""
set datafile separator ','
set key outside right top
set grid
set terminal {term} size 900,540 {font}
set output '{out}/scaling_samples.{ext}'
set title 'Samples/s against ranks (weak scaling: batch per rank fixed)'
set xlabel 'ranks'; set ylabel 'samples/s (global)'
plot for [m in "{models}"] '{out}/scaling_'.m.'.dat' using 1:2 with linespoints lw 2 title m
set output '{out}/scaling_efficiency.{ext}'
set title 'Scaling efficiency: samples/s / (ranks x samples/s at 1 rank)'
set ylabel 'efficiency'; set yrange [0:1.2]
plot for [m in "{models}"] '{out}/scaling_'.m.'.dat' using 1:3 with linespoints lw 2 title m
set autoscale y
set output '{out}/step_breakdown.{ext}'
set title 'Per-step breakdown (ms): compute, communication hidden by backward, exposed'
set style data histograms; set style histogram rowstacked; set style fill solid 0.8 border -1
set boxwidth 0.7; set xlabel 'model / ranks x hosts / buckets'; set ylabel 'ms per step'; set xtics rotate by -30
plot '{out}/breakdown.dat' using 2:xtic(1) title 'compute alone', '' using 3 title 'compute with comm hidden under it', '' using 4 title 'exposed comm'
set output '{out}/bucket_sensitivity.{ext}'
set style data linespoints; unset xtics; set xtics norotate
set title 'Bucket-size sensitivity: step time by --bucket-cap-mb (auto at the right)'
set xlabel 'bucket cap (MB)'; set ylabel 'step ms'
plot for [m in "{models}"] '{out}/buckets_'.m.'_on.dat' using 2:xtic(1) lw 2 title m.' overlap', \
     for [m in "{models}"] '{out}/buckets_'.m.'_off.dat' using 2:xtic(1) lw 2 dt 2 title m.' no overlap'
"""


def efficiency(rows):
    """Each row's scaling efficiency: its samples/s / (ranks x samples/s of the 1-rank run of its
    model and scaling, on one host). SystemExit, before anything is written, where that run is
    missing: an efficiency of 0 would read as a measurement."""
    base = {(r["model"], r["scaling"]): float(r["samples_per_s"]) for r in rows
            if r["figure"] == "scaling" and int(r["ranks"]) == 1 and int(r["hosts"]) == 1}
    missing = sorted({(r["model"], r["scaling"]) for r in rows} - base.keys())
    if missing:
        sys.exit("sweep: no 1-rank run of " + ", ".join(f"{m} ({s} scaling)" for m, s in missing) +
                 " to compute the scaling efficiency from: nothing written")
    if any(v <= 0 for v in base.values()):
        sys.exit("sweep: a 1-rank run measured no samples/s: nothing written")
    return [float(r["samples_per_s"]) / (int(r["ranks"]) * base[r["model"], r["scaling"]]) for r in rows]


def plot(rows, out, models):
    by = lambda **kw: [r for r in rows if all(str(r[k]) == str(v) for k, v in kw.items())]
    eff = dict(zip((id(r) for r in rows), efficiency(rows)))
    for m in models:
        pts = sorted(by(figure="scaling", model=m, scaling="weak", hosts=1), key=lambda r: int(r["ranks"]))
        with open(f"{out}/scaling_{m}.dat", "w") as f:
            for r in pts:
                f.write(f"{r['ranks']},{float(r['samples_per_s']):.1f},{eff[id(r)]:.3f}\n")
        for ov in ("on", "off"):
            pts = by(figure="buckets", model=m, overlap=ov)
            order = {"1": 0, "4": 1, "25": 2, "auto": 3}
            with open(f"{out}/buckets_{m}_{ov}.dat", "w") as f:
                for r in sorted(pts, key=lambda r: order.get(r["buckets"], 9)):
                    f.write(f"{r['buckets']},{float(r['step_ms']):.2f}\n")
    with open(f"{out}/breakdown.dat", "w") as f:
        for r in by(figure="buckets", overlap="on"):
            # The step = its compute (part of which ran with communication underneath: hidden)
            # + the communication after backward (exposed). Clamped: on a loaded machine the
            # all-reduce spans can exceed the compute they overlapped.
            busy = float(r["step_ms"]) - float(r["exposed_ms"])
            hidden = min(float(r["hidden_ms"]), busy)
            f.write(f"{r['model']} {r['ranks']} ranks {r['hosts']} hosts {r['buckets']} MB,{busy - hidden:.2f},"
                    f"{hidden:.2f},{float(r['exposed_ms']):.2f}\n")
    if not shutil.which("gnuplot"):
        print("gnuplot not found (docker/install-deps.sh installs gnuplot-nox): CSV and .dat files only")
        return
    for term, ext, font in (("pngcairo", "png", "font ',10'"), ("svg", "svg", "dynamic")):
        # gnuplot's single-quoted strings take a quote doubled: a folder named "pl o'ts" broke
        # the script after the whole sweep had run.
        script = GNUPLOT.format(term=term, ext=ext, out=str(out).replace("'", "''"),
                                models=" ".join(models), font=font)
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="docs/plots")
    ap.add_argument("--quick", action="store_true", help="mlp only, 1-2 ranks, 1-2 hosts: under a minute on 2 cores")
    ap.add_argument("--models", default="",
                    help="comma-separated subset of mlp,cnn,gpt (default: mlp with --quick, else all)")
    ap.add_argument("--reps", type=int, default=1, help="runs of each configuration (at least 1)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--plot-only", action="store_true", help="redraw from OUT/sweep.csv")
    args = ap.parse_args()
    if args.reps < 1:
        ap.error(f"--reps {args.reps}: at least 1 (each point is the median over the runs)")
    csv_path = os.path.join(args.out, "sweep.csv")
    if args.plot_only:
        rows = list(csv.DictReader(open(csv_path)))
        plot(rows, args.out, sorted({r["model"] for r in rows}))
        return
    can_netns = os.geteuid() == 0 and subprocess.run(["ip", "netns", "list"], capture_output=True).returncode == 0
    if not can_netns:
        print("note: not root or no ip netns: one host only")
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"--models: unknown model(s) {','.join(unknown)} (known: {','.join(MODELS)})")
    cfgs = grid(args.quick, can_netns, models)
    work = tempfile.mkdtemp(prefix="dprun-sweep.")
    tokens = os.path.join(work, "tokens.bin")
    if any(c[1] == "gpt" for c in cfgs):
        corpus = "/usr/share/games/fortunes"
        src = corpus if os.path.exists(corpus) else __file__
        subprocess.run([os.path.join(args.build, "dprun"), "prepare-text", "--input", src, "--output", tokens,
                        "--val-fraction", "0"], check=True, stdout=subprocess.DEVNULL)
    results = {c: [] for c in cfgs}
    t0 = time.time()
    for rep in range(args.reps):
        for i, c in enumerate(cfgs):
            r = run_one(args, c, tokens, work, i)
            if r:
                results[c].append(r)
                print(f"[{time.time() - t0:6.0f}s] {c}: {r['samples_per_s']:.0f} samples/s, step {r['step_ms']:.1f} ms, "
                      f"comm {r['comm_ms']:.1f} exposed {r['exposed_ms']:.1f} (load {r['load']})", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    # Every point or none: --out defaults to the committed docs/plots, which a partial or empty
    # sweep would overwrite.
    failed = [c for c, rs in results.items() if not rs]
    if failed:
        sys.exit(f"sweep: {len(failed)} of {len(cfgs)} configuration(s) have no successful run "
                 f"(first: {failed[0]}); nothing written to {args.out}")
    rows = []
    for c, rs in results.items():
        row = dict(zip(FIELDS[:8], c))
        for k in FIELDS[8:]:
            if k != "efficiency":
                row[k] = statistics.median(r[k] for r in rs)
        rows.append(row)
    for row, e in zip(rows, efficiency(rows)):
        row["efficiency"] = e
    os.makedirs(args.out, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    plot(rows, args.out, sorted({r["model"] for r in rows}))
    print(f"wrote {csv_path} and the plots in {args.out}")


if __name__ == "__main__":
    main()
