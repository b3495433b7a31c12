#!/usr/bin/env bash
# The CPU demo, end to end, from a fresh clone: set up .venv, write a synthetic
# COCO-format dataset of shapes, train the small DINO of config/DINO/DINO_demo.py
# from random weights (progress display, COCO evaluation after every epoch),
# evaluate the final checkpoint, and draw its detections on validation images.
# Nothing is downloaded besides the Python packages.
#   DATA=dir OUT=dir bash scripts/demo.sh [extra main.py arguments, e.g. --options epochs=4]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh

DATA="${DATA:-data/synthetic_shapes}"
OUT="${OUT:-demo_output}"
PY=.venv/bin/python
CONFIG=config/DINO/DINO_demo.py

if [ ! -f "$DATA/annotations/instances_val2017.json" ]; then
    echo "[demo] writing the synthetic dataset to $DATA"
    "$PY" tools/make_synthetic_coco.py --out "$DATA" --num-train 600 --num-val 100 --overwrite \
        --min-size 128 --max-size 192 --classes 5 --seed 0
fi

echo "[demo] training (re-running continues from $OUT/checkpoint.pth)"
"$PY" main.py -c "$CONFIG" --data "$DATA" --output_dir "$OUT" --device cpu --num_workers 1 "$@"

echo "[demo] evaluating $OUT/checkpoint.pth"
"$PY" main.py -c "$CONFIG" --data "$DATA" --output_dir "$OUT/eval" --device cpu --num_workers 1 \
    --eval --resume "$OUT/checkpoint.pth" "$@"

echo "[demo] drawing detections of 8 validation images"
# settings and class names come from the checkpoint; --overwrite replaces this script's earlier pictures
"$PY" tools/inference.py --checkpoint "$OUT/checkpoint.pth" \
    --images $(ls "$DATA"/val2017/* | head -n 8) --output_dir "$OUT/pictures" --device cpu --overwrite
echo "[demo] done: pictures in $OUT/pictures, training log in $OUT/log.txt"
