# detrex DINO-Swin-L-384-4scale, 12 epochs: 56.9 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-swin/dino_swin_large_384_4scale_12ep.py
_base_ = ['detrex_dino_base.py']

backbone = 'swin_L_384_22k'
return_interm_indices = [1, 2, 3]
num_feature_levels = 4
backbone_freeze_keywords = None
use_checkpoint = True
