"""The instance norm of a full MFAI window three ways, on the libtorch the set-up installs
(BENCHMARKS.md, session 16): the nine operations `masked_instance_norm` used to run with every
frame valid, `torch.layer_norm` over T (what it runs now) and `torch.instance_norm` (tried and
dropped). One thread, µs per call, each figure measured twice.

Usage: ~/.cache/skelseg/venv/bin/python scripts/norm-bench.py [--calls 3000] [--json]
"""
import argparse
import json
import time

import torch


def nine_ops(x):
    t = x.shape[2]
    mean = x.sum(2, keepdim=True, dtype=torch.float32) / t
    centred = x - mean
    var = centred.square().sum(2, keepdim=True, dtype=torch.float32) / t
    return (centred / (var + 1e-5).sqrt()).to(x.dtype)


def layer_norm(x):
    return torch.layer_norm(x, [x.shape[2]], None, None, 1e-5)


def instance_norm(x):
    return torch.instance_norm(x, None, None, None, None, True, 0.0, 1e-5, False)


def per_call_us(f, x, calls):
    for _ in range(calls // 10):
        f(x)
    start = time.perf_counter()
    for _ in range(calls):
        f(x)
    return (time.perf_counter() - start) / calls * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    forms = {"nine_ops": nine_ops, "layer_norm": layer_norm, "instance_norm": instance_norm}
    rows = []
    with torch.no_grad():
        for n, t in [(1, 256), (1, 128), (1, 64), (8, 256), (8, 16)]:
            x = torch.randn(n, 64, t)
            want = nine_ops(x)
            row = {"shape": [n, 64, t]}
            for name, f in forms.items():
                row[name] = [per_call_us(f, x, args.calls) for _ in range(2)]
                row[name + "_max_abs_diff"] = (f(x) - want).abs().max().item()
            rows.append(row)
    if args.json:
        print(json.dumps({"torch": torch.__version__, "rows": rows}))
        return
    print(f"torch {torch.__version__}, one thread, µs per call (two measurements)")
    print(f"{'x':>14}  " + "  ".join(f"{k:>16}" for k in forms))
    for r in rows:
        cells = "  ".join(f"{r[k][0]:7.1f} / {r[k][1]:6.1f}" for k in forms)
        print(f"{str(tuple(r['shape'])):>14}  {cells}")


if __name__ == "__main__":
    main()
