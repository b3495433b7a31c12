#!/usr/bin/env bash
# Train DINO-4scale on Slurm through submitit (1 node x 8 GPUs); requeued jobs
# continue from the last checkpoint.
# Usage: bash scripts/DINO_train_submitit.sh COCODIR [run_with_submitit.py arguments...]
#   e.g. --partition gpu --qos preemptible --requeue --nodes 2
set -e
if [ $# -lt 1 ]; then
	echo "usage: bash $0 COCODIR [run_with_submitit.py arguments...]" >&2
	exit 2
fi
coco_path=$1
shift
python run_with_submitit.py --timeout 3000 --job_name DINO \
	--job_dir logs/DINO/R50-MS4-%j --ngpus 8 --nodes 1 \
	-c config/DINO/DINO_4scale.py --coco_path "$coco_path" \
	--options dn_scalar=100 embed_init_tgt=TRUE \
	dn_label_coef=1.0 dn_bbox_coef=1.0 use_ema=False \
	dn_box_noise_scale=1.0 "$@"
