#!/usr/bin/env bash
# Evaluate a DINO-4scale checkpoint on COCO val2017 on Slurm through submitit (1 node x 8 GPUs).
# Usage: bash scripts/DINO_eval_submitit.sh COCODIR CHECKPOINT [run_with_submitit.py arguments...]
set -e
if [ $# -lt 2 ]; then
	echo "usage: bash $0 COCODIR CHECKPOINT [run_with_submitit.py arguments...]" >&2
	exit 2
fi
coco_path=$1
checkpoint=$2
shift 2
python run_with_submitit.py --timeout 3000 --job_name DINO \
	--job_dir logs/DINO/R50-MS4-%j --ngpus 8 --nodes 1 \
	-c config/DINO/DINO_4scale.py --coco_path "$coco_path" \
	--eval --resume "$checkpoint" \
	--options dn_scalar=100 embed_init_tgt=TRUE \
	dn_label_coef=1.0 dn_bbox_coef=1.0 use_ema=False \
	dn_box_noise_scale=1.0 "$@"
