# DINO-4scale with FocalNet-L LRF (IN-22k, 384, 3 focal levels), as FocalNet-DINO's
# config of this name: 57.5 box AP at 12 epochs, 58.3 at 36 (detrex model zoo).
# Pretrained file in backbone_dir: focalnet_large_lrf_384.pth
_base_ = ['DINO_4scale.py']

backbone = 'focalnet_L_384_22k'
focal_levels = 3
focal_windows = 5
use_checkpoint = True
