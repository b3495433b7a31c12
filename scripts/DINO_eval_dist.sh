#!/usr/bin/env bash
# Evaluate a DINO-4scale checkpoint on COCO val2017 with torch.distributed on one node.
# Usage: [GPUS=8] bash scripts/DINO_eval_dist.sh COCODIR CHECKPOINT [main.py arguments...]
#   The numbers equal those of one process (each image is evaluated once, batch size 1).
set -e
if [ $# -lt 2 ]; then
	echo "usage: [GPUS=8] bash $0 COCODIR CHECKPOINT [main.py arguments...]" >&2
	exit 2
fi
coco_path=$1
checkpoint=$2
shift 2
torchrun --nproc_per_node=${GPUS:-8} main.py \
	--output_dir logs/DINO/R50-MS4-%j \
	-c config/DINO/DINO_4scale.py --coco_path "$coco_path" \
	--eval --resume "$checkpoint" \
	--options dn_scalar=100 embed_init_tgt=TRUE \
	dn_label_coef=1.0 dn_bbox_coef=1.0 use_ema=False \
	dn_box_noise_scale=1.0 "$@"
