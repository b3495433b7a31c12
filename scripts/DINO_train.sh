#!/usr/bin/env bash
# Train DINO-4scale (ResNet-50) on COCO with one process (GPU if there is one, else CPU).
# Usage: bash scripts/DINO_train.sh COCODIR [main.py arguments...]
#   Further arguments go to main.py after the fixed ones, e.g.
#   --output_dir logs/mine  --options epochs=24 lr_drop=20  --pretrain_model_path X.pth
#   Rerunning the same command continues from logs/DINO/R50-MS4/checkpoint.pth.
set -e
if [ $# -lt 1 ]; then
	echo "usage: bash $0 COCODIR [main.py arguments...]" >&2
	exit 2
fi
coco_path=$1
shift
python main.py \
	--output_dir logs/DINO/R50-MS4 -c config/DINO/DINO_4scale.py --coco_path "$coco_path" \
	--options dn_scalar=100 embed_init_tgt=TRUE \
	dn_label_coef=1.0 dn_bbox_coef=1.0 use_ema=False \
	dn_box_noise_scale=1.0 "$@"
