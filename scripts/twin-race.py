"""skelseg's streaming path raced against the PyTorch loops of its twin, in the same run (issue 13's
"≥ 20× faster per frame than the PyTorch-eager researcher's loop, same weights").

Each round runs the twin's timer (`python/skelseg_twin.py time`: the researcher's loop, the full
model on the last window at every frame, and the twin's own best sliding loop) and skelseg's bench
(`skelseg --threads 1 bench --max-streams 0`: the streaming cost per frame and a single-stream
replay one frame per push), one intra-op thread each, on the same checkpoint. Rounds alternate
which one goes first (ABBA), and every ratio is taken inside its round, so the machine's drift
between rounds cancels. Prints a table (figure, median [min–max] over the rounds) or, with
--json, one JSON object; every report is kept as OUT_DIR/{twin,skelseg}_ROUND.json.

Usage: python3 scripts/twin-race.py SKELSEG_BINARY OUT_DIR [--model M] [--rounds 4]
           [--python ~/.cache/skelseg/venv/bin/python] [--json]
e.g.   python3 scripts/twin-race.py $CARGO_TARGET_DIR/release/skelseg /tmp/race \\
           --model fixtures/models/pku-mmd.safetensors
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_json(cmd, path):
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    with open(path, "w") as f:
        f.write(done.stdout)
    return json.loads(done.stdout)


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "rounds": values}  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("skelseg")
    p.add_argument("out_dir")
    p.add_argument("--model", default=os.path.join(ROOT, "fixtures/models/pku-mmd.safetensors"))
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--python", default=os.path.expanduser("~/.cache/skelseg/venv/bin/python"))
    p.add_argument("--frames", type=int, default=32, help="frames of the twin's sliding loop")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.rounds < 1:
        sys.exit("--rounds must be at least 1")
    os.makedirs(a.out_dir, exist_ok=True)
    twin_cmd = [a.python, os.path.join(ROOT, "python/skelseg_twin.py"), "time", "--model", a.model,
                "--threads", "1", "--frames", str(a.frames), "--reps", "3", "--json"]  # fmt: skip
    bench_cmd = [a.skelseg, "--threads", "1", "bench", "--model", a.model, "--max-streams", "0",
                 "--repeats", "3", "--window-threads", "1", "--json"]  # fmt: skip

    rows = {k: [] for k in ("researcher_ms", "twin_sliding_ms", "skelseg_streaming_ms",
                            "skelseg_replay_ms", "vs_researcher", "vs_researcher_replay",
                            "vs_twin_sliding")}  # fmt: skip
    for i in range(a.rounds):
        order = ["twin", "skelseg"] if i % 2 == 0 else ["skelseg", "twin"]
        reports = {}
        for who in order:
            cmd = twin_cmd if who == "twin" else bench_cmd
            reports[who] = run_json(cmd, os.path.join(a.out_dir, f"{who}_{i}.json"))
            print(f"round {i + 1}/{a.rounds}: {who} done", file=sys.stderr)
        twin, bench = reports["twin"], reports["skelseg"]
        researcher = twin["researcher_ms_per_frame"]["median"]
        sliding = twin["sliding_ms_per_frame"]["median"]
        streaming = bench["streaming_ms_per_frame"]["median"]
        # Replay speed is × real time at 30 fps: ms per frame = 1000 / (30 · speed).
        replay = 1000.0 / (30.0 * bench["replay_speed_x"]["median"])
        for key, value in (("researcher_ms", researcher), ("twin_sliding_ms", sliding),
                           ("skelseg_streaming_ms", streaming), ("skelseg_replay_ms", replay),
                           ("vs_researcher", researcher / streaming),
                           ("vs_researcher_replay", researcher / replay),
                           ("vs_twin_sliding", sliding / streaming)):  # fmt: skip
            rows[key].append(value)

    report = {
        "model": a.model,
        "rounds": a.rounds,
        "torch": reports["twin"]["torch"],
        "window_frames": reports["skelseg"]["window_frames"],
        "hop_frames": reports["skelseg"]["hop_frames"],
        "figures": {k: spread(v) for k, v in rows.items()},
    }
    if a.json:
        print(json.dumps(report))
        return
    labels = {
        "researcher_ms": "PyTorch researcher's loop (hop 1, full model), ms/frame",
        "twin_sliding_ms": "PyTorch twin's sliding loop (DSMI cached), ms/frame",
        "skelseg_streaming_ms": "skelseg streaming cost (DSMI + engine window / hop), ms/frame",
        "skelseg_replay_ms": "skelseg replay, one frame per push, ms/frame",
        "vs_researcher": "researcher's loop / skelseg streaming",
        "vs_researcher_replay": "researcher's loop / skelseg replay",
        "vs_twin_sliding": "twin's sliding loop / skelseg streaming",
    }
    print(f"{a.rounds} rounds, torch {report['torch']}, W {report['window_frames']}, "
          f"hop {report['hop_frames']}, one thread each")  # fmt: skip
    for key, label in labels.items():
        f = report["figures"][key]
        per = " / ".join(f"{v:.3g}" for v in f["rounds"])
        print(f"{label:64s} {f['median']:8.3g} [{f['min']:.3g}–{f['max']:.3g}]  ({per})")


if __name__ == "__main__":
    main()
