"""Turns a `skelseg synth --ndjson` folder into the shape of issue 9's target (BENCHMARKS.md,
"Small custom data"): recordings named by subject (sNN_tMM, 5 takes per subject), PKU-style
labels `class,start,end` (1-based inclusive frames; class names, or ids with a mapping.txt),
splits/train.txt (subjects 1-6) and splits/test.txt (subjects 7-8).

Usage: python3 scripts/small-data-standin.py SYNTH_DIR OUT_DIR names|ids"""
import os, sys, glob, json
src, dst, style = sys.argv[1], sys.argv[2], sys.argv[3]  # style: names | ids
test_subjects = {7, 8}
os.makedirs(dst + "/skeleton"); os.makedirs(dst + "/label"); os.makedirs(dst + "/splits")
recs = sorted(os.path.basename(p)[:-7] for p in glob.glob(src + "/skeleton/*.ndjson"))
names = set()
rows = {}
for i, r in enumerate(recs):
    subj, take = i // 5 + 1, i % 5 + 1
    new = f"s{subj:02d}_t{take:02d}"
    lines = open(f"{src}/skeleton/{r}.ndjson").read().splitlines()
    fps = json.loads(lines[0]).get("fps")
    open(f"{dst}/skeleton/{new}.ndjson", "w").write("\n".join(lines) + "\n")
    out = []
    for ln in open(f"{src}/label/{r}.csv").read().splitlines()[1:]:
        lab, a, b = ln.split(",")
        names.add(lab)
        out.append((lab, round(float(a) * fps) + 1, round(float(b) * fps) + 1))
    rows[new] = (subj, out)
classes = ["background"] + sorted(names - {"background"})
if style == "ids":
    open(dst + "/mapping.txt", "w").write("".join(f"{i} {c}\n" for i, c in enumerate(classes)))
for new, (subj, out) in rows.items():
    with open(f"{dst}/label/{new}.txt", "w") as f:
        for lab, a, b in out:
            f.write(f"{classes.index(lab) if style == 'ids' else lab},{a},{b}\n")
for split, keep in (("train", lambda s: s not in test_subjects), ("test", lambda s: s in test_subjects)):
    open(f"{dst}/splits/{split}.txt", "w").write("".join(f"{n}\n" for n, (s, _) in sorted(rows.items()) if keep(s)))
print(dst, len(rows), "recordings", classes)
