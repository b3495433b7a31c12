# DINO-4scale with FocalNet-B LRF (IN-1k, 224, 3 focal levels).
# Pretrained file in backbone_dir: focalnet_base_lrf.pth
_base_ = ['DINO_4scale.py']

backbone = 'focalnet_B_224_1k_fl3'
focal_levels = 3
focal_windows = 3
