#!/usr/bin/env bash
# Train DINO-4scale with the backbone of config/DINO/DINO_4scale_convnext.py on Slurm
# (1 node x 8 GPUs through submitit).
# Usage: bash scripts/DINO_train_submitit_convnext.sh COCODIR BACKBONE_DIR [run_with_submitit.py arguments...]
#   BACKBONE_DIR holds the pretrained backbone file named in the config.
set -e
if [ $# -lt 2 ]; then
	echo "usage: bash $0 COCODIR BACKBONE_DIR [run_with_submitit.py arguments...]" >&2
	exit 2
fi
coco_path=$1
backbone_dir=$2
shift 2
python run_with_submitit.py --timeout 3000 --job_name DINO \
	--job_dir logs/DINO/ConvNeXtXL-MS4-%j --ngpus 8 --nodes 1 \
	-c config/DINO/DINO_4scale_convnext.py --coco_path "$coco_path" \
	--options dn_scalar=100 embed_init_tgt=TRUE \
	dn_label_coef=1.0 dn_bbox_coef=1.0 use_ema=False \
	dn_box_noise_scale=1.0 backbone_dir="$backbone_dir" "$@"
