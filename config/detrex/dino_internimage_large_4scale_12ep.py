# detrex DINO-InternImage-Large-4scale, 12 epochs: 57.0 box AP (detrex DINO model zoo).
# projects/dino/configs/dino-internimage/dino_internimage_large_4scale_12ep.py
_base_ = ['detrex_dino_base.py']

backbone = 'internimage_L_22k'
return_interm_indices = [1, 2, 3]
num_feature_levels = 4
backbone_freeze_keywords = None
backbone_drop_path_rate = 0.0
