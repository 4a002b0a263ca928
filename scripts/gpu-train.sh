#!/usr/bin/env bash
# Trains the PKU-MMD candidates on one GPU with the PyTorch twin (python/skelseg_train.py), all
# runs side by side for the same wall-time budget, then times the twin on the GPU.
#
#   scripts/gpu-train.sh PACK OUT [BUDGET_MIN]
#
# PACK: `skelseg train --export-inputs` folder packed by `python/skelseg_train.py pack`.
# OUT: where the checkpoints (.safetensors + .json + .log.jsonl) and reports go, bundled into at
# most eight files (tar archives of at most two or three checkpoints each).
# Runs (name: what):
#   interact-s{0,1,2}   InterAct from scratch, seeds 0–2
#   star-s{0,1,2}       InterAct* (`spatial: none`), seeds 0–2 (the paper's Table 4 question)
#   concat-s0           DSMI with concatenation instead of attention fusion, seed 0
#   tuned-s0            InterAct continued from the shipped fixtures/models/pku-mmd.safetensors
set -u
pack=$1
out=$2
budget=${3:-6.5}
py=${PYTHON:-python3}
work=$(mktemp -d)
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONUNBUFFERED=1
nvidia-smi -L || true
$py -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'

# EXTRA: more trainer flags for every run (a CPU smoke test: EXTRA="--limit 6 --device cpu").
read -r -a extra <<<"${EXTRA:-}"
common=(train "$pack" --epochs 400 --budget-min "$budget" --batch 8 --lr 1e-3 --val-every 2 --threads 1 --json "${extra[@]}")
run() { # name, extra args...
  local name=$1
  shift
  timeout $(awk "BEGIN{print int($budget*60+90)}") \
    $py "$here/python/skelseg_train.py" "${common[@]}" --out "$work/$name.safetensors" "$@" \
    >"$work/$name.report.json" 2>"$work/$name.err" &
}
for s in 0 1 2; do
  run interact-s$s --seed $s
  run star-s$s --seed $s --config '{"spatial":"none"}'
done
run concat-s0 --seed 0 --config '{"spatial":"concat"}'
run tuned-s0 --seed 0 --init "$here/fixtures/models/pku-mmd.safetensors" --lr 3e-4
wait
for f in "$work"/*.report.json; do
  echo "$(basename "$f" .report.json): $(head -c 400 "$f")"
  tail -n 3 "${f%.report.json}.err"
done

# The twin on the GPU: one stream (researcher's loop, sliding loop) and batched streams.
timeout 120 $py "$here/python/skelseg_twin.py" time --model "$here/fixtures/models/pku-mmd.safetensors" \
  --device cuda --frames 64 --reps 3 --batches 1,16,64,256,1024 --json >"$work/twin-cuda-time.json" 2>"$work/twin-cuda-time.err"
cat "$work/twin-cuda-time.json"
# GPU against CPU outputs of the twin on a fixed input (fp32, TF32 off).
timeout 120 $py - "$here" >"$work/twin-cuda-parity.json" <<'EOF'
import json, sys, torch
sys.path.insert(0, sys.argv[1] + "/python")
import skelseg_twin as twin
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
model, _ = twin.load(sys.argv[1] + "/fixtures/models/pku-mmd.safetensors")
io = twin.fixed_input(model.cfg, 2, 300, 290, 7)
with torch.no_grad():
    cpu = twin.outputs(model, io)
    gpu = twin.outputs(model.cuda(), {k: v.cuda() for k, v in io.items()})
diffs = twin.compare({k: v.cpu() for k, v in gpu.items()}, cpu, io["mask"])
print(json.dumps({"max_rel_diff": max(d["rel"] for d in diffs.values()), "per_output": diffs}))
EOF
cat "$work/twin-cuda-parity.json"

mkdir -p "$out"
cd "$work" || exit 1
tar cf "$out/interact-01.tar" interact-s0.* interact-s1.*
tar cf "$out/interact-2-tuned.tar" interact-s2.* tuned-s0.*
tar cf "$out/star.tar" star-s*.*
tar cf "$out/concat-reports.tar" concat-s0.* twin-cuda-*
ls -la "$out"
