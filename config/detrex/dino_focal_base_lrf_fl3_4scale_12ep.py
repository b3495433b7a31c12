# detrex DINO with FocalNet-B (128 wide, depths 2-2-18-2), ImageNet-1k LRF, 3 focal levels of windows 3, 4 scales,
# 12 epochs (detrex DINO configs; no released checkpoint). detrex builds it with the FocalNet of
# projects/dino/configs/dino-focal/focalnet.py: pre-norm blocks, no layer scale, plain patch-embedding
# convolutions, modulator not normalized, drop path 0.1 (models/dino/backbones/focalnet.py, _LRF_1K).
# Recipe: the FocalNet-L 12-epoch one (AdamW lr 1e-4, backbone lr x 0.1, wd 1e-4, grad clip 0.1, total batch 16).
# Pretrained weights: --options pretrained_backbone_path=/path/to/focalnet_base_lrf.pth (or backbone_dir=DIR).
# projects/dino/configs/dino-focal/dino_focal_base_lrf_fl3_4scale_12ep.py
_base_ = ['dino_focalnet_large_lrf_384_4scale_12ep.py']

backbone = 'focalnet_B_224_1k_fl3'
focal_windows = 3
use_checkpoint = False
