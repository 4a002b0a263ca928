"""Two `skelseg` builds raced in alternating pairs (BENCHMARKS.md: "compare against a baseline in
the same run"). On a shared VM the neighbours' load moves every figure by a third between runs;
running A, B, A, B ... and taking the ratio inside each pair cancels most of that drift.

Each run is `BINARY <bench arguments> --json`; every report is kept as OUT_DIR/{a,b}_PAIR.json.
Prints a table (figure, A's and B's median [min–max] over the pairs, B/A per pair and its
median) and, with --json, one JSON object instead.

Usage: python3 scripts/ab-bench.py A_BINARY B_BINARY OUT_DIR [--pairs 3] [--json] -- BENCH_ARGS...
e.g.   python3 scripts/ab-bench.py old/skelseg new/skelseg /tmp/ab -- --threads 1 bench \\
           --model fixtures/models/pku-mmd.safetensors --max-streams 0 --repeats 3 --window-threads 1
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# Figures compared (each a `Figure` of the bench report: its median is used).
FIGURES = [
    "matmul_peak_gmacs",
    "dsmi_us_per_frame",
    "dsmi_us_per_frame_at_hop",
    "mfai_ms_per_window",
    "mfai_final_ms_per_window",
    "full_ms_per_window",
    "streaming_ms_per_frame",
    "speedup_vs_baseline",
    "mfai_peak_fraction",
    "replay_speed_x",
    "replay_batched_speed_x",
    "replay_batched_threads_speed_x",
    "max_streams_30fps",
]


def run(binary, args, path):
    with open(path, "w") as out:
        done = subprocess.run([binary, *args, "--json"], stdout=out, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"{binary} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    with open(path) as f:
        return json.load(f)


def median_of(report, key):
    fig = report.get(key)
    if not isinstance(fig, dict) or fig.get("median") is None:
        return None
    return fig["median"]


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__)
    split = argv.index("--")
    p = argparse.ArgumentParser(description="two skelseg builds in alternating bench pairs")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("out")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--json", action="store_true")
    opts = p.parse_args(argv[:split])
    bench_args = argv[split + 1 :]
    os.makedirs(opts.out, exist_ok=True)
    reports = {"a": [], "b": []}
    for i in range(opts.pairs):
        for side, binary in (("a", opts.a), ("b", opts.b)):
            start = time.monotonic()
            reports[side].append(run(binary, bench_args, os.path.join(opts.out, f"{side}_{i + 1}.json")))
            print(f"pair {i + 1} {side}: {time.monotonic() - start:.0f} s", file=sys.stderr)
    rows = []
    for key in FIGURES:
        a = [median_of(r, key) for r in reports["a"]]
        b = [median_of(r, key) for r in reports["b"]]
        if any(x is None for x in a + b):
            continue
        ratios = [y / x for x, y in zip(a, b) if x]
        rows.append({
            "figure": key,
            "a": a,
            "b": b,
            "b_over_a": ratios,
            "b_over_a_median": statistics.median(ratios) if ratios else None,
        })
    if opts.json:
        print(json.dumps({"a": opts.a, "b": opts.b, "pairs": opts.pairs, "bench_args": bench_args, "figures": rows}))
        return
    show = lambda v: f"{statistics.median(v):.3f} [{min(v):.3f}–{max(v):.3f}]"
    print(f"{'figure':<32} {'A (median of pairs)':<26} {'B':<26} B/A per pair (median)")
    for r in rows:
        pairs = " ".join(f"{x:.3f}" for x in r["b_over_a"])
        print(f"{r['figure']:<32} {show(r['a']):<26} {show(r['b']):<26} {pairs} ({r['b_over_a_median']:.3f})")


if __name__ == "__main__":
    main()
