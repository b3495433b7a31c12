#!/usr/bin/env bash
# Evaluate a DINO-4scale checkpoint on COCO val2017 with one process; prints the 12 COCO numbers.
# Usage: bash scripts/DINO_eval.sh COCODIR CHECKPOINT [main.py arguments...]
#   CHECKPOINT may come from this project or from the original DINO code.
#   The checkpoint given here is the one evaluated, whatever the output dir holds.
set -e
if [ $# -lt 2 ]; then
	echo "usage: bash $0 COCODIR CHECKPOINT [main.py arguments...]" >&2
	exit 2
fi
coco_path=$1
checkpoint=$2
shift 2
python main.py \
	--output_dir logs/DINO/R50-MS4-%j \
	-c config/DINO/DINO_4scale.py --coco_path "$coco_path" \
	--eval --resume "$checkpoint" \
	--options dn_scalar=100 embed_init_tgt=TRUE \
	dn_label_coef=1.0 dn_bbox_coef=1.0 use_ema=False \
	dn_box_noise_scale=1.0 "$@"
