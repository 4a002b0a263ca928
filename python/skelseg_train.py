#!/usr/bin/env python3
"""Trains skelseg's InterAct model in PyTorch (the twin in skelseg_twin.py), on a GPU when there
is one, from the inputs `skelseg train --export-inputs DIR` writes; the result is a skelseg
checkpoint that `skelseg calibrate`, `eval` and `stream` take as they are.

The loop follows skelseg::train (src/train/trainer.rs, data.rs, src/model/loss.rs): per epoch
one crop of every training recording in a shuffled order, a fifth of the steps on whole
recordings (up to 4,096 frames), crops resampled in speed, the same augmentation (rotation about
the vertical axis, scale, translation, joint noise, slot swap), sigmoid focal + dice + boundary
BCE at every stage, AdamW with a linear warm-up and a cosine to 1 % of the peak, gradient
clipping, and the best checkpoint by validation F1@50 (argmax decoding; `skelseg calibrate
--threshold` then picks the boundary threshold and the temperature on the same validation
recordings). Random draws differ from skelseg's (its RNG is ChaCha in Rust).

Commands (each prints one JSON object on stdout with --json):
  pack   quantise an export folder into one compressed file (abs in millimetres, motion gaps,
         labels, boundary targets; rel and motion are derived again on unpacking) for moving it
         to a GPU machine
  train  train on an export folder or a packed file; `--budget-min` sets the wall time, and the
         epochs are fitted to it after the first one
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import skelseg_twin as twin  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402

PACK_FORMAT = "skelseg-inputs-packed/1"
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0
BACKGROUND = 0

# ---------------------------------------------------------------------------------------------
# Inputs


def load_export(folder: Path) -> tuple[dict, dict[str, list[dict]]]:
    """The manifest and, per split, the recordings as dicts of tensors (src/train/export.rs)."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    parts = ("abs", "rel", "motion", "labels", "boundary")
    splits = {}
    for split, names in manifest["splits"].items():
        tensors = twin.read_safetensors(folder / f"{split}.safetensors")
        splits[split] = [{"name": n, **{p: tensors[f"{n}/{p}"] for p in parts}} for n in names]
    return manifest, splits


def presence(abs_: Tensor) -> Tensor:
    """`(2, T)` bool: a slot holds a body in a frame when any coordinate is non-zero."""
    return abs_.view(2, 3, abs_.shape[1], -1).abs().sum((1, 3)) > 0


def motion_gaps(rec: dict) -> tuple[Tensor, int]:
    """Per slot and frame the index gap motion was derived across (0: motion is zero there), and
    how many slot-frames with motion fit no gap of 1..=10 (they are packed as 0)."""
    a, m = rec["abs"].double(), rec["motion"].double()
    t = a.shape[1]
    gaps = torch.zeros(2, t, dtype=torch.uint8)
    misfits = 0
    for slot in range(2):
        sa, sm = a[3 * slot : 3 * slot + 3], m[3 * slot : 3 * slot + 3, 1:]
        d = sa[:, 1:] - sa[:, :-1]
        moving = sm.abs().amax((0, 2)) > 0
        left = moving.clone()
        for g in range(1, 11):
            fits = left & ((d / g - sm).abs().amax((0, 2)) <= 1e-5)
            gaps[slot, 1:][fits] = g
            left &= ~fits
        misfits += int(left.sum())
    return gaps, misfits


def derive(abs_: Tensor, gaps: Tensor) -> tuple[Tensor, Tensor]:
    """rel and motion from abs and the motion gaps, as src/modality.rs derives them."""
    c, t, v = abs_.shape
    present = presence(abs_).repeat_interleave(3, 0).unsqueeze(-1).to(abs_.dtype)  # (6, T, 1)
    rel = (abs_ - abs_[:, :, :1]) * present
    g = gaps.to(abs_.dtype).repeat_interleave(3, 0).unsqueeze(-1)  # (6, T, 1)
    diff = torch.zeros_like(abs_)
    diff[:, 1:] = abs_[:, 1:] - abs_[:, :-1]
    motion = torch.where(g > 0, diff / g.clamp_min(1.0), torch.zeros_like(diff))
    return rel, motion


def pack(folder: Path, out: Path) -> dict:
    """Writes `out` (lzma of a torch.save dict) and returns the reconstruction errors."""
    manifest, splits = load_export(folder)
    packed, worst, misfits = {}, {"abs": 0.0, "rel": 0.0, "motion": 0.0}, 0
    for split, recs in splits.items():
        items = []
        for r in recs:
            gaps, bad = motion_gaps(r)
            misfits += bad
            mm = (r["abs"] * 1000.0).round()
            if mm.abs().max() > 32767:
                raise ValueError(f"{r['name']}: coordinates beyond ±32.767 m")
            q = mm.to(torch.int16)
            abs_q = q.float() / 1000.0
            rel_q, motion_q = derive(abs_q, gaps)
            for name, got in (("abs", abs_q), ("rel", rel_q), ("motion", motion_q)):
                worst[name] = max(worst[name], float((got - r[name]).abs().max()))
            items.append(
                {
                    "name": r["name"],
                    "abs_mm": q,
                    "gaps": gaps,
                    "labels": r["labels"].to(torch.uint8),
                    "boundary": r["boundary"].half(),
                }
            )
            if r["labels"].max() > 255:
                raise ValueError(f"{r['name']}: class ids above 255")
        packed[split] = items
    buf = io.BytesIO()
    torch.save({"format": PACK_FORMAT, "manifest": manifest, "splits": packed}, buf)
    data = lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME)
    Path(out).write_bytes(data)
    return {
        "out": str(out),
        "bytes": len(data),
        "max_abs_error_m": worst,
        "motion_misfits": misfits,
    }


def unpack(path: Path) -> tuple[dict, dict[str, list[dict]]]:
    blob = torch.load(io.BytesIO(lzma.decompress(Path(path).read_bytes())), weights_only=True)
    if blob.get("format") != PACK_FORMAT:
        raise ValueError(f"{path}: format {blob.get('format')!r}, expected {PACK_FORMAT!r}")
    splits = {}
    for split, items in blob["splits"].items():
        recs = []
        for it in items:
            abs_ = it["abs_mm"].float() / 1000.0
            rel, motion = derive(abs_, it["gaps"])
            recs.append(
                {
                    "name": it["name"],
                    "abs": abs_,
                    "rel": rel,
                    "motion": motion,
                    "labels": it["labels"].long(),
                    "boundary": it["boundary"].float(),
                }
            )
        splits[split] = recs
    return blob["manifest"], splits


def load_inputs(path: Path):
    return load_export(path) if Path(path).is_dir() else unpack(path)


# ---------------------------------------------------------------------------------------------
# Crops, batches and augmentation (src/train/data.rs)


def speed_crop(length: int, max_len: int, speed: float, rng: random.Random) -> tuple[int, int]:
    out_len = max(1, min(int(math.floor(length / speed)), max(max_len, 1)))
    span = min(int(math.ceil(out_len * speed)), length)
    start = rng.randint(0, length - span) if length > span else 0
    return start, out_len


def augment(x: dict, aug: dict, rng: random.Random, gen: torch.Generator) -> dict:
    """Rotation about y and scale, slot swap, translation of abs, joint noise; one crop."""
    abs_, rel, motion = x["abs"], x["rel"], x["motion"]
    t = abs_.shape[1]
    present = presence(abs_).to(abs_.dtype).unsqueeze(-1)  # (2, T, 1)
    present_c = present.repeat_interleave(3, 0)  # (6, T, 1)
    theta = rng.uniform(-1.0, 1.0) * math.radians(aug["rotation_deg"])
    scale = 1.0 + rng.uniform(-1.0, 1.0) * aug["scale"]
    c, s, k = math.cos(theta) * scale, math.sin(theta) * scale, scale
    block = torch.tensor([[c, 0.0, s], [0.0, k, 0.0], [-s, 0.0, c]])
    swap = aug["swap_slots"] > 0 and bool(present[1].any()) and rng.random() < aug["swap_slots"]
    mix = torch.zeros(6, 6)
    for slot in range(2):
        to = 1 - slot if swap else slot
        mix[3 * to : 3 * to + 3, 3 * slot : 3 * slot + 3] = block
    mix = mix.to(abs_.device)
    if swap:
        present_c = present_c.roll(3, 0)

    def rotate(y: Tensor) -> Tensor:
        return (mix @ y.reshape(6, -1)).view(6, t, -1)

    abs_, rel, motion = rotate(abs_), rotate(rel), rotate(motion)
    if aug["translation_m"] > 0:
        shift = torch.tensor([rng.gauss(0.0, 1.0) * aug["translation_m"] for _ in range(6)])
        abs_ = abs_ + shift.to(abs_.device).view(6, 1, 1) * present_c
    if aug["joint_noise_m"] > 0:
        noise = torch.randn(abs_.shape, generator=gen, device=abs_.device) * aug["joint_noise_m"]
        noise = noise * present_c
        abs_ = abs_ + noise
        rel = rel + noise - noise[:, :, :1]
        prev = F.pad(noise[:, :-1], (0, 0, 1, 0))
        motion = motion + (noise - prev) * (motion != 0).to(noise.dtype)
    return {**x, "abs": abs_, "rel": rel, "motion": motion}


def make_batch(items, speeds, aug, rng, gen, device) -> dict:
    """Crops `[(rec, start, len)]` → padded `(N, 6, T, 25)` modalities, labels, boundary, mask."""
    t = max(n for _, _, n in items)
    out = {k: [] for k in ("abs", "rel", "motion", "labels", "boundary", "mask")}
    for (rec, start, n), speed in zip(items, speeds):
        k = torch.arange(n, device=device)
        if abs(speed - 1.0) > 1e-9:
            off = (k.double() * speed).floor().long().clamp_max(rec["abs"].shape[1] - 1 - start)
        else:
            off = k
        idx = start + off
        x = {
            "abs": rec["abs"][:, idx],
            "rel": rec["rel"][:, idx],
            "motion": rec["motion"][:, idx] * speed,
        }
        if aug is not None:
            x = augment(x, aug, rng, gen)
        pad = t - n
        for name in ("abs", "rel", "motion"):
            out[name].append(F.pad(x[name], (0, 0, 0, pad)))
        out["labels"].append(F.pad(rec["labels"][idx], (0, pad)))
        out["boundary"].append(F.pad(rec["boundary"][idx], (0, pad)))
        out["mask"].append(F.pad(torch.ones(n, device=device), (0, pad)))
    return {k: torch.stack(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# Loss (src/model/loss.rs)


def interact_loss(stages, labels: Tensor, target_b: Tensor, mask: Tensor) -> dict[str, Tensor]:
    a = stages[-1][0].shape[1]
    mask = mask.float()
    valid = labels * mask.long()
    m3 = mask.unsqueeze(1)
    onehot = F.one_hot(valid, a).float().permute(0, 2, 1) * m3  # (N, A, T)
    frames = mask.sum(1)
    has = (frames > 0).float()
    sequences = has.sum().clamp_min(1.0)
    total_frames = frames.sum().clamp_min(1.0)
    focal, dice, bce = [], [], []
    for x, b in stages:
        ce = F.binary_cross_entropy_with_logits(x, onehot, reduction="none")
        p = x.sigmoid()
        p_t = p * onehot + (1 - p) * (1 - onehot)
        weight = onehot * FOCAL_ALPHA + (1 - onehot) * (1 - FOCAL_ALPHA)
        focal.append((ce * (1 - p_t) ** FOCAL_GAMMA * weight * m3).sum() / total_frames)
        pm = p * m3
        inter = (pm * onehot).sum(2)
        denom = pm.square().sum(2) + onehot.sum(2) + 2e-6
        present = (onehot.sum(2) > 0).float()
        per_seq = ((1 - 2 * inter / denom) * present).sum(1) / present.sum(1).clamp_min(1.0)
        dice.append((per_seq * has).sum() / sequences)
        bl = F.binary_cross_entropy_with_logits(b, target_b, reduction="none") * mask
        bce.append((bl.sum(1) / frames.clamp_min(1.0) * has).sum() / sequences)
    parts = {
        k: torch.stack(v).mean() for k, v in (("focal", focal), ("dice", dice), ("boundary", bce))
    }
    parts["total"] = parts["focal"] + parts["dice"] + parts["boundary"]
    return parts


# ---------------------------------------------------------------------------------------------
# Metrics (MS-TCN style segment F1 with background left out, frame accuracy)


def segments(labels: list[int]) -> list[tuple[int, int, int]]:
    out, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            out.append((labels[start], start, i))
            start = i
    return out


def f1_counts(pred: list[int], gt: list[int], iou: float) -> tuple[int, int, int]:
    p = [s for s in segments(pred) if s[0] != BACKGROUND]
    g = [s for s in segments(gt) if s[0] != BACKGROUND]
    used = [False] * len(g)
    tp = fp = 0
    for c, s, e in p:
        best, best_j = 0.0, -1
        for j, (gc, gs, ge) in enumerate(g):
            if gc != c:
                continue
            inter = max(0, min(e, ge) - max(s, gs))
            union = max(e, ge) - min(s, gs)
            if union > 0 and inter / union > best:
                best, best_j = inter / union, j
        if best >= iou and not used[best_j]:
            tp += 1
            used[best_j] = True
        else:
            fp += 1
    return tp, fp, len(g) - sum(used)


def score(preds: list[list[int]], gts: list[list[int]]) -> dict:
    out = {}
    for k, iou in (("f1_10", 0.1), ("f1_25", 0.25), ("f1_50", 0.5)):
        tp = fp = fn = 0
        for p, g in zip(preds, gts):
            a, b, c = f1_counts(p, g, iou)
            tp, fp, fn = tp + a, fp + b, fn + c
        prec = tp / max(tp + fp, 1)
        rec = tp / max(tp + fn, 1)
        out[k] = 100.0 * (2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0)
    frames = sum(len(g) for g in gts)
    out["acc"] = (
        100.0 * sum(sum(a == b for a, b in zip(p, g)) for p, g in zip(preds, gts)) / max(frames, 1)
    )
    return out


@torch.no_grad()
def validate(model, recs, device) -> dict:
    model.eval()
    preds, gts = [], []
    for r in recs:
        n = r["abs"].shape[1]
        stages = model(
            r["abs"][None], r["rel"][None], r["motion"][None], torch.ones(1, n, device=device)
        )
        preds.append(stages[-1][0][0].argmax(0).tolist())
        gts.append(r["labels"].tolist())
    model.train()
    return score(preds, gts)


# ---------------------------------------------------------------------------------------------
# The loop


def to_device(recs: list[dict], device: torch.device) -> list[dict]:
    """The recordings with their tensors on `device` (all of them fit on a GPU)."""
    return [{k: v.to(device) if isinstance(v, Tensor) else v for k, v in r.items()} for r in recs]


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    floor = 0.01 * peak
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


def train(args) -> dict:
    started = time.perf_counter()
    device = torch.device(
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    torch.set_num_threads(args.threads)
    manifest, splits = load_inputs(args.inputs)
    meta = manifest["meta"]
    cfg = twin.model_config(meta)
    for key, value in json.loads(args.config or "{}").items():
        cfg[key] = value
    train_recs, val_recs = splits["train"], splits["val"] or splits["train"]
    if args.limit:
        train_recs, val_recs = train_recs[: args.limit], val_recs[: max(1, args.limit // 4)]
    train_recs, val_recs = to_device(train_recs, device), to_device(val_recs, device)
    settings = {**manifest["train"]}
    # The export's settings, with this run's changes; the epochs follow the budget (recorded
    # when a checkpoint is written) and there is no early stopping.
    settings.update(
        lr=args.lr or settings["lr"],
        batch=args.batch or settings["batch"],
        seed=args.seed,
        epochs=args.epochs,
        val_every=args.val_every,
        patience=0,
        time_budget_secs=args.budget_min * 60.0,
        init=str(args.init) if args.init else None,
    )
    aug = None if args.no_augment else settings["augment"]

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    model = twin.InterAct(cfg).to(device)
    if args.init:
        init, _ = twin.load(args.init)
        model.load_state_dict(init.state_dict())
    model.train()
    opt = torch.optim.AdamW(
        model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"]
    )
    params = sum(p.numel() for p in model.parameters())

    batch = settings["batch"]
    steps_per_epoch = -(-len(train_recs) // batch)
    epochs = args.epochs
    total_steps = steps_per_epoch * epochs
    budget = args.budget_min * 60.0
    log = open(args.out.with_suffix(".log.jsonl"), "w") if args.out else None
    best, history, step, frames_total, epoch, train_secs_total = None, [], 0, 0, 0, 0.0
    marks = [started]
    while epoch < epochs:
        epoch += 1
        order = list(range(len(train_recs)))
        rng.shuffle(order)
        t0, epoch_frames, losses = time.perf_counter(), 0, []
        for i in range(0, len(order), batch):
            chunk = order[i : i + batch]
            whole = rng.random() < settings["whole_fraction"]
            max_len = settings["max_whole_frames"] if whole else settings["crop_frames"]
            speeds = [
                rng.uniform(1 - aug["speed"], 1 + aug["speed"]) if aug and aug["speed"] > 0 else 1.0
                for _ in chunk
            ]
            items = []
            for j, sp in zip(chunk, speeds):
                start, n = speed_crop(train_recs[j]["abs"].shape[1], max_len, sp, rng)
                items.append((train_recs[j], start, n))
            epoch_frames += sum(n for _, _, n in items)
            b = make_batch(items, speeds, aug, rng, gen, device)
            stages = model(b["abs"], b["rel"], b["motion"], b["mask"])
            parts = interact_loss(stages, b["labels"], b["boundary"], b["mask"])
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total_steps, settings["lr"], settings["warmup_steps"])
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings["clip_norm"])
            opt.step()
            step += 1
            losses.append(parts["total"].detach())
        loss = float(torch.stack(losses).mean())
        if not math.isfinite(loss):
            raise RuntimeError(f"loss became {loss} in epoch {epoch}")
        train_secs = time.perf_counter() - t0
        train_secs_total += train_secs
        frames_total += epoch_frames
        marks.append(time.perf_counter())  # epoch pace, validation included
        durations = [b - a for a, b in zip(marks, marks[1:])]
        if budget > 0:
            # Fit the epochs to the budget at the recent pace (the first epoch carries the
            # device's start-up): free to grow in the first three epochs, still inside the
            # warm-up, and only ever fewer after that.
            recent = durations[1:][-3:] or durations
            pace = sum(recent) / len(recent) * 1.05
            fits = epoch + int(max(budget - (time.perf_counter() - started), 0.0) // pace)
            fits = max(epoch, min(fits, args.epochs))
            if fits < epochs or epoch <= 3:
                epochs, total_steps = fits, steps_per_epoch * fits
        entry = {
            "epoch": epoch,
            "step": step,
            "loss": loss,
            "frames_per_sec": epoch_frames / train_secs,
            "lr": opt.param_groups[0]["lr"],
            "planned_epochs": epochs,
        }
        if epoch % args.val_every == 0 or epoch == epochs:
            val = validate(model, val_recs, device)
            entry["val"] = val
            if best is None or (val["f1_50"], val["acc"]) > (
                best["val"]["f1_50"],
                best["val"]["acc"],
            ):
                best = {"epoch": epoch, "val": val}
                if args.out:
                    save(
                        args.out,
                        model,
                        meta,
                        cfg,
                        {**settings, "epochs": epochs},
                        best,
                        device,
                    )
        entry["seconds"] = time.perf_counter() - started
        history.append(entry)
        if log:
            log.write(json.dumps(entry) + "\n")
            log.flush()
        if not args.json:
            v = entry.get("val")
            print(
                f"epoch {epoch}/{epochs} loss {loss:.4f} {entry['frames_per_sec']:.0f} frames/s"
                + (f" val F1@50 {v['f1_50']:.1f} Acc {v['acc']:.1f}" if v else ""),
                file=sys.stderr,
            )
    if log:
        log.close()
    return {
        "out": str(args.out) if args.out else None,
        "device": device_name(device),
        "params": params,
        "epochs": epoch,
        "steps": step,
        "best": best,
        "frames_per_sec": frames_total / max(train_secs_total, 1e-9),
        "seconds": time.perf_counter() - started,
        "seed": args.seed,
        "config": cfg,
        "settings": settings,
        "history": history,
    }


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def save(path: Path, model, meta: dict, cfg: dict, settings: dict, best: dict, device) -> None:
    """The skelseg checkpoint: weights under skelseg's names, the export's metadata, and how it
    was trained (threshold and temperature stay at 0.5 / 1.0 for `skelseg calibrate`)."""
    twin.write_safetensors(path, {k: v.float() for k, v in model.state_dict().items()})
    data = dict(meta.get("data") or {})
    data["training"] = {
        "trainer": "python/skelseg_train.py",
        "device": device_name(device),
        "torch": torch.__version__,
        "epoch": best["epoch"],
        "val": best["val"],
        "train": settings,
    }
    out = {
        **meta,
        "model": {**cfg, "boundary_threshold": 0.5, "temperature": 1.0},
        "data": data,
        "command": " ".join(["python/skelseg_train.py", *sys.argv[1:]]),
    }
    Path(path).with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("pack", help="quantise and compress an export folder")
    k.add_argument("export", type=Path)
    k.add_argument("out", type=Path)
    t = sub.add_parser("train", help="train on an export folder or packed file")
    t.add_argument("inputs", type=Path)
    t.add_argument(
        "--out", type=Path, help="best checkpoint (.safetensors; .json and .log.jsonl beside)"
    )
    t.add_argument("--epochs", type=int, default=100, help="at most this many")
    t.add_argument("--budget-min", type=float, default=0.0, help="wall-time budget (0 = none)")
    t.add_argument("--batch", type=int, help="crops per step (default: the export's)")
    t.add_argument("--lr", type=float, help="peak learning rate (default: the export's)")
    t.add_argument("--config", help="JSON object overriding the model config (e.g. spatial)")
    t.add_argument("--init", type=Path, help="start from this checkpoint")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--val-every", type=int, default=1)
    t.add_argument("--no-augment", action="store_true")
    t.add_argument(
        "--limit", type=int, default=0, help="only this many training recordings (smoke tests)"
    )
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True)
    t.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "pack":
        report = pack(args.export, args.out)
    else:
        report = train(args)
    print(
        json.dumps(report)
        if getattr(args, "json", True)
        else json.dumps({k: v for k, v in report.items() if k != "history"})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
