#!/usr/bin/env bash
# Train DINO-4scale with the backbone of config/DINO/DINO_4scale_convnext.py on one process.
# Usage: bash scripts/DINO_train_convnext.sh COCODIR BACKBONE_DIR [GPU_IDS]
#   BACKBONE_DIR holds the pretrained backbone file named in the config.
#   GPU_IDS (e.g. 0 or 0,1) sets CUDA_VISIBLE_DEVICES; without it the current
#   setting is left alone. Further arguments (starting with -) go to main.py.
set -e
if [ $# -lt 2 ]; then
	echo "usage: bash $0 COCODIR BACKBONE_DIR [GPU_IDS] [main.py arguments...]" >&2
	exit 2
fi
coco_path=$1
backbone_dir=$2
shift 2
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
	export CUDA_VISIBLE_DEVICES=$1
	shift
fi
python main.py \
	--output_dir logs/DINO/ConvNeXtXL-MS4 -c config/DINO/DINO_4scale_convnext.py --coco_path "$coco_path" \
	--options dn_scalar=100 embed_init_tgt=TRUE \
	dn_label_coef=1.0 dn_bbox_coef=1.0 use_ema=False \
	dn_box_noise_scale=1.0 backbone_dir="$backbone_dir" "$@"
