#!/usr/bin/env bash
# Rebuilds the PKU-MMD phase-1 cross-subject subset that skelseg's PKU-MMD model was trained and
# tested on, as a dataset folder that `skelseg train/eval --data DIR` reads.
#
#   scripts/pku-mmd-subset.sh SRC OUT
#
# SRC is a PKU-MMD phase-1 download (academic licence; from the dataset's official project page,
# Peking University): it must hold `PKU_Skeleton_Renew/NNNN-V.txt` (skeletons) and
# `Train_Label_PKU_final/NNNN-V.txt` (labels `class,start,end,confidence`). The partial public
# copy in the GitHub repository AntonioSTO/is-rtmac has the same layout (skeletons at its HEAD
# under data/PKU_Skeleton_Renew/, labels at commit b540023 under Label/Train_Label_PKU_final/).
#
# OUT gets PKU_Skeleton_Renew/, Train_Label_PKU_final/ and splits/{train,test}.txt holding only
# the recordings listed in fixtures/pku-mmd/xsub-subset-{train,test}.txt (193 training and 25 test
# recordings of the official cross-subject split: the ones readable in the public copy). With a
# full download, every listed file is present; the script stops on the first one that is not.
# Nothing is copied into the project: PKU-MMD may not be redistributed.
set -euo pipefail
if [[ $# -ne 2 ]]; then
    sed -n '2,20p' "$0" >&2
    exit 2
fi
src=$1
out=$2
lists=$(cd "$(dirname "$0")/../fixtures/pku-mmd" && pwd)
mkdir -p "$out/PKU_Skeleton_Renew" "$out/Train_Label_PKU_final" "$out/splits"
for split in train test; do
    list="$lists/xsub-subset-$split.txt"
    while read -r name; do
        [[ -z "$name" ]] && continue
        for dir in PKU_Skeleton_Renew Train_Label_PKU_final; do
            if [[ ! -f "$src/$dir/$name.txt" ]]; then
                echo "missing $src/$dir/$name.txt (listed in $list)" >&2
                exit 1
            fi
            cp "$src/$dir/$name.txt" "$out/$dir/$name.txt"
        done
    done < "$list"
    cp "$list" "$out/splits/$split.txt"
done
echo "$(wc -l < "$lists/xsub-subset-train.txt") training and $(wc -l < "$lists/xsub-subset-test.txt") test recordings in $out"
