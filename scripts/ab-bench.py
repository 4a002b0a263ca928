"""Two `skelseg` builds raced in alternating pairs (BENCHMARKS.md: "compare against a baseline in
the same run"). On a shared VM the neighbours' load moves every figure by a third between runs;
running A, B, A, B ... and taking the ratio inside each pair cancels most of that drift.

Each run is `BINARY <bench arguments> --json`; every report is kept as OUT_DIR/{a,b}_PAIR.json.
Pairs run A, B then B, A (ABBA), so neither build always has the second slot. Prints a table
(figure, A's and B's median [min–max] over the pairs, B/A per pair and its median) and, with
--json, one JSON object instead.

When even pairs do not cancel the machine's drift (on session 16's VM unchanged code measured
1.3× slower in one build's runs), give `--profile` to the bench and `--reference` the blocks a
change does not touch: each block group (`mfai.encoder.0`…`.5` → `mfai.encoder`) is then also
compared as its share of the reference blocks *in the same run*, which the drift mostly cancels.

Usage: python3 scripts/ab-bench.py A_BINARY B_BINARY OUT_DIR [--pairs 3] [--json]
           [--reference PREFIX,...] -- BENCH_ARGS...
e.g.   python3 scripts/ab-bench.py old/skelseg new/skelseg /tmp/ab -- --threads 1 bench \\
           --model fixtures/models/pku-mmd.safetensors --max-streams 0 --repeats 3 --window-threads 1
       python3 scripts/ab-bench.py old/skelseg new/skelseg /tmp/ab --pairs 4 \
           --reference mfai.boundary_block,mfai.qblock,mfai.fblock_heads -- --threads 1 bench \
           --model fixtures/models/pku-mmd.safetensors --max-streams 0 --window-threads 1 --profile
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


def block_groups(report):
    """`blocks_ms` medians summed by group: a trailing `.N` (the level or stage) dropped."""
    groups = {}
    for name, fig in report.get("blocks_ms") or []:
        head, _, tail = name.rpartition(".")
        group = head if tail.isdigit() else name
        groups[group] = groups.get(group, 0.0) + fig["median"]
    return groups


def shares(report, reference):
    """Each block group's time over the reference groups' total in the same run."""
    groups = block_groups(report)
    ref = sum(v for k, v in groups.items() if any(k.startswith(p) for p in reference))
    if not ref:
        sys.exit(f"no block matches --reference {','.join(reference)}; is --profile given to the bench?")
    return {k: v / ref for k, v in groups.items()}, groups


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
    p.add_argument("--reference", help="comma-separated block-name prefixes a change leaves alone")
    opts = p.parse_args(argv[:split])
    reference = [x for x in (opts.reference or "").split(",") if x]
    bench_args = argv[split + 1 :]
    os.makedirs(opts.out, exist_ok=True)
    reports = {"a": [], "b": []}
    for i in range(opts.pairs):
        order = (("a", opts.a), ("b", opts.b))
        for side, binary in order if i % 2 == 0 else order[::-1]:
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
    blocks = []
    if reference:
        pairs = [(shares(a, reference), shares(b, reference)) for a, b in zip(reports["a"], reports["b"])]
        for group in pairs[0][0][1]:
            if any(group.startswith(p) for p in reference):
                continue
            ratios = [sb[group] / sa[group] for (sa, _), (sb, _) in pairs if sa.get(group) and group in sb]
            blocks.append({
                "block": group,
                "a_ms": [ga[group] for (_, ga), _ in pairs],
                "b_ms": [gb.get(group) for _, (_, gb) in pairs],
                "b_over_a_of_reference": ratios,
                "b_over_a_of_reference_median": statistics.median(ratios) if ratios else None,
            })
    if opts.json:
        print(json.dumps({"a": opts.a, "b": opts.b, "pairs": opts.pairs, "bench_args": bench_args,
                          "figures": rows, "reference": reference, "blocks": blocks}))
        return
    show = lambda v: f"{statistics.median(v):.3f} [{min(v):.3f}–{max(v):.3f}]"
    print(f"{'figure':<32} {'A (median of pairs)':<26} {'B':<26} B/A per pair (median)")
    for r in rows:
        pairs = " ".join(f"{x:.3f}" for x in r["b_over_a"])
        print(f"{r['figure']:<32} {show(r['a']):<26} {show(r['b']):<26} {pairs} ({r['b_over_a_median']:.3f})")
    if blocks:
        print(f"\nblocks, as shares of {', '.join(reference)} in the same run")
        print(f"{'block':<32} {'A ms (median of pairs)':<26} {'B ms':<26} B/A of the share per pair (median)")
        for r in blocks:
            pairs = " ".join(f"{x:.3f}" for x in r["b_over_a_of_reference"])
            print(f"{r['block']:<32} {show(r['a_ms']):<26} {show([x for x in r['b_ms'] if x is not None]):<26} "
                  f"{pairs} ({r['b_over_a_of_reference_median']:.3f})")


if __name__ == "__main__":
    main()
