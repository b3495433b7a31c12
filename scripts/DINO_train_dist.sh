#!/usr/bin/env bash
# Train DINO-4scale on COCO with torch.distributed on one node (one process per GPU).
# Usage: [GPUS=8] bash scripts/DINO_train_dist.sh COCODIR [main.py arguments...]
#   GPUS (default 8) is the number of processes; on a machine without GPUs they
#   run on the CPU (gloo). Several nodes: run torchrun yourself with --nnodes,
#   --node_rank and --rdzv_endpoint, same main.py arguments.
set -e
if [ $# -lt 1 ]; then
	echo "usage: [GPUS=8] bash $0 COCODIR [main.py arguments...]" >&2
	exit 2
fi
coco_path=$1
shift
torchrun --nproc_per_node=${GPUS:-8} main.py \
	--output_dir logs/DINO/R50-MS4 -c config/DINO/DINO_4scale.py --coco_path "$coco_path" \
	--options dn_scalar=100 embed_init_tgt=TRUE \
	dn_label_coef=1.0 dn_bbox_coef=1.0 use_ema=False \
	dn_box_noise_scale=1.0 "$@"
