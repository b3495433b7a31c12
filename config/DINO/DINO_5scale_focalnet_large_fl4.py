# DINO-5scale with FocalNet-L LRF (IN-22k, 384, 4 focal levels), as FocalNet-DINO's
# config of this name: 58.5 box AP at 12 epochs (detrex model zoo).
# Pretrained file in backbone_dir: focalnet_large_lrf_384_fl4.pth
_base_ = ['DINO_5scale.py']

backbone = 'focalnet_L_384_22k_fl4'
focal_levels = 4
focal_windows = 3
use_checkpoint = True
