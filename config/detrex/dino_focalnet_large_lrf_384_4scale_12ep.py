# detrex DINO-Focal-Large-4scale (FocalNet-L LRF, 3 focal levels), 12 epochs: 57.5 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-focal/dino_focalnet_large_lrf_384_4scale_12ep.py
_base_ = ['detrex_dino_base.py']

backbone = 'focalnet_L_384_22k'
focal_levels = 3
focal_windows = 5
return_interm_indices = [1, 2, 3]
num_feature_levels = 4
backbone_freeze_keywords = None
use_checkpoint = True
